//! Replays the fuzz targets' seed corpus (`fuzz/corpus/<target>/`) through
//! the same entry points the targets use, so that every seed, and every
//! crash input added there later, is checked by an ordinary `cargo test`:
//! no panic, and a clean end or an error of the documented kinds.

use std::io::ErrorKind;
use std::path::PathBuf;

use aiop::blocking::connection::RecvError;
use aiop_core::connection::__fuzz;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the {target} corpus has its seeds");
    files
}

#[test]
fn every_frames_seed_ends_cleanly_or_with_a_data_error() {
    for (name, data) in corpus("frames") {
        let (n, end) = __fuzz::frames(&data);
        match end {
            Ok(()) => {}
            Err(RecvError::Io(e))
                if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) => {}
            Err(e) => panic!("{name}: unexpected outcome {e:?}"),
        }
        // Seeds whose outcome is known.
        match name.as_str() {
            "valid_bytes_then_typed" | "valid_empty_frames" => assert_eq!(n, 2, "{name}"),
            "oversized_4gib" | "one_over_the_limit" => {
                let (_, end) = __fuzz::frames(&data);
                let e = std::io::Error::from(end.unwrap_err());
                assert_eq!(e.kind(), ErrorKind::InvalidData, "{name}");
                assert!(e.to_string().contains("exceeds the limit"), "{name}: {e}");
            }
            _ => {}
        }
    }
}

#[test]
fn every_handshake_seed_is_refused_on_both_sides() {
    for (name, data) in corpus("handshake") {
        for (side, outcome) in ["listener", "client"]
            .iter()
            .zip(__fuzz::handshake_both(&data))
        {
            let e = outcome.expect_err("no input can know the nonces");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::PermissionDenied
                ),
                "{name} against the {side}: {e}"
            );
        }
    }
}
