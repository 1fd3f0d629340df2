//! Hard state crash safety and the `ringraft log` CLI. (Group commit is the node's write path,
//! tested in `log_write_path.rs`.)

use std::fs;
use std::os::unix::fs::FileExt;
use std::process::Command;

use bytes::Bytes;
use ringraft::core::{Entry, EntryKind, HardState};
use ringraft::log::{segment_file_name, HardStateStore, Log, LogOptions};

fn hs(term: u64, vote: Option<u64>) -> HardState {
    HardState {
        current_term: term,
        voted_for: vote,
        acked_index: term * 10,
    }
}

#[test]
fn hard_state_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, loaded) = HardStateStore::open(dir.path()).expect("open");
    assert_eq!(loaded, HardState::default());
    for term in 1..=5 {
        store.save(&hs(term, Some(term + 10))).expect("save");
    }
    drop(store);
    let (_, loaded) = HardStateStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded, hs(5, Some(15)));
}

/// A crash while writing save number `n` damages the slot `n % 2`; the other slot holds `n - 1`.
#[test]
fn hard_state_crash_during_a_save_yields_old_or_new_never_a_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hard_state");
    let (mut store, _) = HardStateStore::open(dir.path()).expect("open");
    store.save(&hs(1, Some(1))).expect("save 1"); // slot 1
    store.save(&hs(2, None)).expect("save 2"); // slot 0
    let good = fs::read(&path).expect("read");
    store.save(&hs(3, Some(7))).expect("save 3"); // slot 1, the one we damage below
    drop(store);
    let written = fs::read(&path).expect("read");
    // Every prefix of the third save reaching disk, the rest of its slot still holding save 1.
    for cut in 0..=48 {
        let mut bytes = good.clone();
        bytes[4096..4096 + cut].copy_from_slice(&written[4096..4096 + cut]);
        fs::write(&path, &bytes).expect("write");
        let (_, loaded) = HardStateStore::open(dir.path()).expect("open after crash");
        // The new value may only win once its whole slot reached disk (the trailing bytes of
        // this slot happen to equal the old slot's, so that is before cut 48).
        let complete = bytes[4096..4144] == written[4096..4144];
        assert!(
            loaded == hs(2, None) || (complete && loaded == hs(3, Some(7))),
            "cut {cut}: {loaded:?}"
        );
        assert!(
            !complete || loaded == hs(3, Some(7)),
            "cut {cut}: a complete slot must win"
        );
    }
    // A flipped bit in the slot being written, and a file cut short inside it.
    let mut bytes = written.clone();
    bytes[4096 + 30] ^= 0x80;
    fs::write(&path, &bytes).expect("write");
    assert_eq!(
        HardStateStore::open(dir.path()).expect("open").1,
        hs(2, None)
    );
    fs::write(&path, &written[..4096 + 20]).expect("write");
    let (mut store, loaded) = HardStateStore::open(dir.path()).expect("open");
    assert_eq!(loaded, hs(2, None));
    // Saving after recovery goes on from the surviving slot.
    store.save(&hs(4, Some(2))).expect("save");
    drop(store);
    assert_eq!(
        HardStateStore::open(dir.path()).expect("open").1,
        hs(4, Some(2))
    );
}

#[test]
fn hard_state_torn_first_save_is_the_default_and_double_damage_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hard_state");
    let mut bytes = vec![0u8; 8192];
    bytes[4096..4100].copy_from_slice(&[9, 9, 9, 9]);
    fs::write(&path, &bytes).expect("write");
    assert_eq!(
        HardStateStore::open(dir.path()).expect("open").1,
        HardState::default()
    );
    bytes[0..4].copy_from_slice(&[7, 7, 7, 7]);
    fs::write(&path, &bytes).expect("write");
    let err = HardStateStore::open(dir.path())
        .err()
        .expect("both slots damaged");
    assert!(err.to_string().contains("hard_state"), "{err}");
}

fn entries(first: u64, n: usize, term: u64, payload_bytes: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            term,
            index: first + i as u64,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![(first + i as u64) as u8; payload_bytes]),
            record: None,
        })
        .collect()
}

#[test]
fn cli_verify_reports_clean_and_planted_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _) = Log::open(
            dir.path(),
            LogOptions {
                segment_bytes: 16 << 10,
                ..LogOptions::default()
            },
        )
        .expect("open");
        for b in 0..20u64 {
            log.append(&entries(1 + 3 * b, 3, 1, 900)).expect("append");
        }
    }
    let bin = env!("CARGO_BIN_EXE_ringraft");
    let ok = Command::new(bin)
        .args(["log", "verify"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("indexes 1..=60"));

    let dump = Command::new(bin)
        .args(["log", "dump"])
        .arg(dir.path())
        .args(["--from", "5", "--to", "8"])
        .output()
        .expect("run");
    assert!(dump.status.success());
    let text = String::from_utf8_lossy(&dump.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("5 term=1 normal len=900"), "{text}");

    // Plant corruption in the second record of the first segment (followed by valid records).
    let seg = dir.path().join(segment_file_name(1));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open seg");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 4096 + 200).expect("read");
    file.write_all_at(&[byte[0] ^ 0x20], 4096 + 200)
        .expect("write");
    drop(file);
    let bad = Command::new(bin)
        .args(["log", "verify"])
        .arg(dir.path())
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{out}");
    assert!(
        out.contains(&segment_file_name(1)) && out.contains("offset 4096"),
        "{out}"
    );
}

#[test]
fn cli_verify_reports_a_torn_tail_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let options = LogOptions {
            segment_bytes: 16 << 10,
            ..LogOptions::default()
        };
        let (mut log, _) = Log::open(dir.path(), options).expect("open");
        log.append(&entries(1, 3, 1, 100)).expect("append");
    }
    let seg = dir.path().join(segment_file_name(1));
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open seg");
    file.write_all_at(&[0xEE; 64], 4096).expect("write garbage");
    drop(file);
    let bin = env!("CARGO_BIN_EXE_ringraft");
    let out = Command::new(bin)
        .args(["log", "verify"])
        .arg(dir.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("torn write") && text.contains("offset 4096"),
        "{text}"
    );
}
