//! Arbitrary bytes from a (hostile or broken) ssh mux master through the native mux decoder.
//!
//! - Decoding a byte stream never panics and never allocates beyond the input: every length
//!   field is checked before use.
//! - Whatever decodes re-encodes to a frame that decodes to the same message (the decoder
//!   ignores trailing bytes, so the re-encoding may be shorter than the input, never different
//!   in meaning).
//! - The bytes reported as used are whole frames, within the input.
#![no_main]

use conn_openssh::mux::codec::{CodecError, ServerMessage, split_frame};
use conn_openssh::mux::decode_server_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((messages, used)) = decode_server_message(data) else {
        return;
    };
    assert!(used <= data.len());
    for msg in messages {
        // Text fields are decoded lossily: each invalid byte becomes U+FFFD (3 bytes), so only
        // a reason can outgrow the frame limit on re-encoding; everything else must fit.
        let frame = match msg.encode() {
            Ok(frame) => frame,
            Err(CodecError::TooLarge { .. })
                if matches!(
                    msg,
                    ServerMessage::Failure { .. } | ServerMessage::PermissionDenied { .. }
                ) =>
            {
                continue;
            }
            Err(e) => panic!("decoded message {msg:?} does not re-encode: {e}"),
        };
        let (body, consumed) = split_frame(&frame)
            .expect("our own frame is well-formed")
            .expect("our own frame is complete");
        assert_eq!(consumed, frame.len());
        assert_eq!(ServerMessage::decode(body).expect("re-decodes"), msg);
    }
});
