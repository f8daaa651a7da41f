//! What the docs check reads out of a Markdown file: inline code spans, the lines of fenced
//! blocks, links, and the anchors a link may point at. CommonMark's rules as far as these
//! docs use them: fences of ``` or ~~~ (indented too, inside list items), code spans of any
//! backtick count within one block, inline links and images.

use std::collections::HashSet;

/// A piece of text with the line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// 1-based line.
    pub line: usize,
    /// The text (a code span's content with its newlines as spaces).
    pub text: String,
}

/// A Markdown file, read.
#[derive(Debug, Default)]
pub struct Doc {
    /// Inline code spans.
    pub spans: Vec<At>,
    /// Lines of fenced blocks, with the fence's info string (`sh`, `rust`, empty).
    pub fenced: Vec<(String, At)>,
    /// Link and image targets (`design.md#refresh`, `#host-sets`, `https://…`).
    pub links: Vec<At>,
    /// The anchors of this file: `<a id="…">` and `<a name="…">`, and each heading's slug.
    pub anchors: HashSet<String>,
}

/// Reads `text`.
pub fn parse(text: &str) -> Doc {
    let mut doc = Doc::default();
    let mut fence: Option<(String, String)> = None; // (marker, info)
    let mut block: Vec<(usize, &str)> = Vec::new();
    let mut slugs: HashSet<String> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = line.trim_start();
        if let Some((marker, info)) = &fence {
            if trimmed.starts_with(marker.as_str())
                && trimmed
                    .trim_end()
                    .chars()
                    .all(|c| c == marker.as_bytes()[0] as char)
            {
                fence = None;
            } else {
                doc.fenced.push((
                    info.clone(),
                    At {
                        line: line_no,
                        text: line.to_string(),
                    },
                ));
            }
            continue;
        }
        let marker: String = trimmed
            .chars()
            .take_while(|&c| c == '`' || c == '~')
            .collect();
        if marker.len() >= 3
            && marker
                .chars()
                .all(|c| c == marker.chars().next().unwrap_or('`'))
        {
            inline(&block, &mut doc);
            block.clear();
            let info = trimmed[marker.len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            fence = Some((marker, info.to_string()));
            continue;
        }
        if trimmed.is_empty() {
            inline(&block, &mut doc);
            block.clear();
            continue;
        }
        if trimmed.starts_with('#') {
            let heading = trimmed.trim_start_matches('#');
            if heading.starts_with(' ') || heading.is_empty() {
                let base = slug(heading.trim().trim_end_matches('#').trim());
                let mut name = base.clone();
                let mut k = 1;
                while !slugs.insert(name.clone()) {
                    name = format!("{base}-{k}");
                    k += 1;
                }
                doc.anchors.insert(name);
            }
        }
        for id in html_ids(line) {
            doc.anchors.insert(id);
        }
        block.push((line_no, line));
    }
    inline(&block, &mut doc);
    doc
}

/// The values of `id="…"` and `name="…"` attributes of `<a>` tags on `line`.
fn html_ids(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("<a ") {
        let tag = &rest[at..rest[at..].find('>').map_or(rest.len(), |e| at + e)];
        for attr in ["id=\"", "name=\""] {
            if let Some(p) = tag.find(attr) {
                let value = &tag[p + attr.len()..];
                out.push(value[..value.find('"').unwrap_or(value.len())].to_string());
            }
        }
        rest = &rest[at + 3..];
    }
    out
}

/// GitHub's anchor for a heading: the rendered text lowercased, every character but letters,
/// digits, `-`, `_` and spaces dropped, spaces made `-`.
pub fn slug(heading: &str) -> String {
    let mut text = String::new();
    // Links render as their text.
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    text.push_str(rest);
    text.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The code spans and links of one block (consecutive non-blank lines outside fences).
fn inline(block: &[(usize, &str)], doc: &mut Doc) {
    if block.is_empty() {
        return;
    }
    // The block as one text, each byte knowing its line.
    let mut text = String::new();
    let mut lines = Vec::new();
    for (n, l) in block {
        text.push_str(l);
        text.push('\n');
        lines.extend(std::iter::repeat_n(*n, l.len() + 1));
    }
    let b = text.as_bytes();
    let mut plain = b.to_vec(); // the text with code spans blanked, for the links
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|&&c| c == b'`').count();
        // The closing run: exactly as many backticks.
        let mut j = i + run;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let r = b[j..].iter().take_while(|&&c| c == b'`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        let Some(end) = close else {
            i += run; // a literal backtick run
            continue;
        };
        let mut content = text[i + run..end].replace('\n', " ");
        if content.len() > 2 && content.starts_with(' ') && content.ends_with(' ') {
            content = content[1..content.len() - 1].to_string();
        }
        doc.spans.push(At {
            line: lines[i],
            text: content,
        });
        for c in &mut plain[i..end + run] {
            *c = b' ';
        }
        i = end + run;
    }
    let plain = String::from_utf8_lossy(&plain);
    let mut from = 0;
    while let Some(p) = plain[from..].find("](") {
        let start = from + p + 2;
        let rest = &plain[start..];
        let end = rest.find([')', ' ', '\n']).unwrap_or(rest.len());
        let target = rest[..end].trim_start_matches('<').trim_end_matches('>');
        if !target.is_empty() {
            doc.links.push(At {
                line: lines[start.min(lines.len() - 1)],
                text: target.to_string(),
            });
        }
        from = start;
    }
}

#[test]
fn spans_fences_links_and_anchors() {
    let doc = parse(
        "# The `conn` command\n\nSee `a`, ``b`c`` and `multi\nline` [x](y.md#z) \
         ![img](docs/f.svg).\n\n  ```sh\n  conn run `x`\n  ```\n\
         ## Fuzzing: `fuzz/`\n## Fuzzing: `fuzz/`\n<a id=\"refresh\"></a>**R** `[q](not-a-link)`\n",
    );
    let spans: Vec<_> = doc
        .spans
        .iter()
        .map(|s| (s.line, s.text.as_str()))
        .collect();
    assert_eq!(
        spans,
        [
            (1, "conn"),
            (3, "a"),
            (3, "b`c"),
            (3, "multi line"),
            (9, "fuzz/"),
            (10, "fuzz/"),
            (11, "[q](not-a-link)")
        ]
    );
    let links: Vec<_> = doc
        .links
        .iter()
        .map(|s| (s.line, s.text.as_str()))
        .collect();
    assert_eq!(links, [(4, "y.md#z"), (4, "docs/f.svg")]);
    assert_eq!(doc.fenced.len(), 1);
    assert_eq!(doc.fenced[0].1.text.trim(), "conn run `x`");
    for a in [
        "the-conn-command",
        "fuzzing-fuzz",
        "fuzzing-fuzz-1",
        "refresh",
    ] {
        assert!(doc.anchors.contains(a), "{a}: {:?}", doc.anchors);
    }
}
