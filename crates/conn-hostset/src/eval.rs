//! Computing the set of an expression: operands made into sets (items expanded, groups asked
//! of the resolver and parsed in turn), combined left to right by their operators.

use crate::builder::Builder;
use crate::error::ParseError;
use crate::group::{GroupResolver, NoGroups, Resolved};
use crate::parse::{self, DEFAULT_MAX_NAMES, GroupRef, Item, Op, Operand, RefKind};
use crate::set::HostSet;

/// The constructors that read expressions or names; they live beside the evaluator so that
/// the set itself knows nothing of the syntax.
impl HostSet {
    /// Parses a host-set expression (`a,b,h[001-100,200]`, `root@rack[1-2]-n[01-16]`,
    /// `h[1-9]!h5`) into the set of its names; more than [`DEFAULT_MAX_NAMES`] names is an
    /// error, and so is a node group (`@web`): see [`HostSet::parse_with_groups`].
    pub fn parse(expr: &str) -> Result<HostSet, ParseError> {
        HostSet::parse_with_limit(expr, DEFAULT_MAX_NAMES)
    }

    /// [`HostSet::parse`] with another limit on the number of names the expression makes
    /// (duplicates counted).
    pub fn parse_with_limit(expr: &str, max_names: usize) -> Result<HostSet, ParseError> {
        evaluate(expr, max_names, &mut NoGroups)
    }

    /// [`HostSet::parse_with_limit`] where node groups (`@web`, `@source:group`, `@*`,
    /// `@@source`) are resolved by `groups`; a group that cannot be resolved is an error at
    /// its `@`, with the resolver's message.
    pub fn parse_with_groups(
        expr: &str,
        max_names: usize,
        groups: &mut dyn GroupResolver,
    ) -> Result<HostSet, ParseError> {
        evaluate(expr, max_names, groups)
    }

    /// Adds one plain name (`host` or `user@host`: no brackets, no commas) and says whether it
    /// was new. The name is checked by the same rules as in an expression.
    pub fn insert(&mut self, name: &str) -> Result<bool, ParseError> {
        let mut builder = Builder::default();
        single_into(name, &mut builder)?;
        let one = builder.finish();
        let before = self.len();
        self.extend(&one);
        Ok(self.len() > before)
    }

    /// Builds the set of plain names (see [`HostSet::insert`]).
    pub fn from_names<I, S>(names: I) -> Result<HostSet, ParseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = Builder::default();
        for name in names {
            single_into(name.as_ref(), &mut builder)?;
        }
        Ok(builder.finish())
    }
}

/// Deepest nesting of groups in groups; deeper is taken for a loop the names did not show.
const MAX_DEPTH: usize = 32;

/// Parses `input` into a set: at most `max_names` names made (duplicates counted), groups
/// resolved by `resolver`.
pub(crate) fn evaluate(
    input: &str,
    max_names: usize,
    resolver: &mut dyn GroupResolver,
) -> Result<HostSet, ParseError> {
    Eval {
        max_names,
        resolver,
        stack: Vec::new(),
    }
    .expression(input, None)
}

/// Adds the one plain name `input` (see `HostSet::insert`) to `out`.
pub(crate) fn single_into(input: &str, out: &mut Builder) -> Result<(), ParseError> {
    for term in parse::terms(input, true)? {
        if let Operand::Item(item) = term.operand {
            add_item(&item, out);
        }
    }
    Ok(())
}

fn add_item(item: &Item, out: &mut Builder) {
    parse::expand(&item.pieces, |name| out.add(item.user.as_deref(), name));
}

struct Eval<'r> {
    max_names: usize,
    resolver: &'r mut dyn GroupResolver,
    /// The groups being expanded, outermost first, as `@source:group`.
    stack: Vec<String>,
}

impl Eval<'_> {
    /// The set of `input`; `namespace` is the source that groups without one are asked of
    /// (`None`: the resolver's default).
    fn expression(&mut self, input: &str, namespace: Option<&str>) -> Result<HostSet, ParseError> {
        let terms = parse::terms(input, false)?;
        let max_names = self.max_names;
        let limit = max_names as u64;
        let too_many = |at| {
            ParseError::new(
                input,
                at,
                format!("the expression makes more than {max_names} names (the limit)"),
            )
        };
        // Names made so far, duplicates counted: the limit is on what the expression makes.
        let mut made: u64 = 0;
        let mut set = HostSet::new();
        // Items joined by ',' go into one builder, sorted once (the common case, and the fast
        // one); any other operand first adds them to `set`.
        let mut pending = Builder::default();
        for term in &terms {
            if let (Op::Union, Operand::Item(item)) = (term.op, &term.operand) {
                made = made.saturating_add(parse::count(input, &item.pieces, self.max_names)?);
                if made > limit {
                    return Err(too_many(item.start));
                }
                add_item(item, &mut pending);
                continue;
            }
            set.extend(&std::mem::take(&mut pending).finish());
            let (operand, at) = match &term.operand {
                Operand::Item(item) => {
                    let mut one = Builder::default();
                    parse::count(input, &item.pieces, self.max_names)?;
                    add_item(item, &mut one);
                    (one.finish(), item.start)
                }
                Operand::Group(group) => (self.group(input, group, namespace)?, group.at),
            };
            made = made.saturating_add(operand.len() as u64);
            if made > limit {
                return Err(too_many(at));
            }
            set = match term.op {
                Op::Union => {
                    set.extend(&operand);
                    set
                }
                Op::Difference => set.difference(&operand),
                Op::Intersection => set.intersection(&operand),
                Op::Xor => set.symmetric_difference(&operand),
            };
        }
        set.extend(&pending.finish());
        Ok(set)
    }

    /// The set of one group reference.
    fn group(
        &mut self,
        input: &str,
        group: &GroupRef,
        namespace: Option<&str>,
    ) -> Result<HostSet, ParseError> {
        let at = group.at;
        let failed = |e: crate::GroupError| ParseError::new(input, at, e.message().to_string());
        let mut set = HostSet::new();
        match &group.kind {
            RefKind::All(source) => {
                let source = source.as_deref().or(namespace);
                let resolved = self.resolver.all(source).map_err(failed)?;
                let label = format!("@{}:*", resolved.source);
                set = self.nested(input, at, &label, resolved)?;
            }
            RefKind::List(source) => {
                let source = source.as_deref().or(namespace);
                let (source, names) = self.resolver.list(source).map_err(failed)?;
                let mut builder = Builder::default();
                for name in &names {
                    single_into(name, &mut builder).map_err(|e| {
                        ParseError::new(
                            input,
                            at,
                            format!(
                                "source {source} lists a group name that is not a host name: {e}"
                            ),
                        )
                    })?;
                }
                set = builder.finish();
            }
            RefKind::Named(pieces) => {
                parse::count(input, pieces, self.max_names)?;
                let mut names = Vec::new();
                parse::expand(pieces, |name| names.push(name.to_string()));
                for name in names {
                    let (source, name) = match name.split_once(':') {
                        Some((s, g)) if !s.is_empty() => (Some(s), g),
                        Some((_, g)) => (namespace, g),
                        None => (namespace, name.as_str()),
                    };
                    if name.is_empty() {
                        return Err(ParseError::new(input, at, "empty group name after ':'"));
                    }
                    let resolved = self.resolver.group(source, name).map_err(failed)?;
                    let label = format!("@{}:{name}", resolved.source);
                    set.extend(&self.nested(input, at, &label, resolved)?);
                }
            }
        }
        match &group.user {
            Some(user) => with_user(set, user, input, at),
            None => Ok(set),
        }
    }

    /// The set of a group's text, parsed with the group's source for the groups it names.
    fn nested(
        &mut self,
        input: &str,
        at: usize,
        label: &str,
        resolved: Resolved,
    ) -> Result<HostSet, ParseError> {
        if self.stack.iter().any(|g| g == label) {
            return Err(ParseError::new(
                input,
                at,
                format!(
                    "group {label} includes itself ({} -> {label})",
                    self.stack.join(" -> ")
                ),
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseError::new(
                input,
                at,
                format!("groups nest more than {MAX_DEPTH} deep at {label}"),
            ));
        }
        // As ClusterShell reads a source's answer: words separated by spaces or lines, joined
        // by commas.
        let text = resolved
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(",");
        if text.is_empty() {
            return Ok(HostSet::new());
        }
        self.stack.push(label.to_string());
        let result = self.expression(&text, Some(&resolved.source));
        self.stack.pop();
        result.map_err(|e| ParseError::new(input, at, format!("in group {label}: {e}")))
    }
}

/// `user@@group`: the user for every name of the group; a name with a user of its own is an
/// error (which one would be meant?).
fn with_user(set: HostSet, user: &str, input: &str, at: usize) -> Result<HostSet, ParseError> {
    let mut builder = Builder::default();
    for name in set.expand() {
        if name.contains('@') {
            return Err(ParseError::new(
                input,
                at,
                format!("{user}@ cannot apply to {name}, which has a user of its own"),
            ));
        }
        builder.add(Some(user), &name);
    }
    Ok(builder.finish())
}
