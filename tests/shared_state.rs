//! `SharedMemory` and `ShareableList` across real processes: data written
//! on one side read on the other, names, bad input and crashed creators.

aiop::test_support!();

mod common;

use std::io::ErrorKind;
use std::path::Path;

use aiop::arena::Slot;
use aiop::blocking::process::{Process, StartMethod};
use aiop::blocking::shared::{Item, ShareableList, SharedMemory};
use aiop::named;
use common::{park_forever, set_and_wake, wait_nonzero};

const METHODS: [StartMethod; 2] = [StartMethod::SPAWN, StartMethod::FORK_SERVER];

/// A name no other test (or test run) uses.
fn unique(test: &str) -> String {
    format!("shared-state-{}-{test}", std::process::id())
}

/// Whether the name's file is in `/dev/shm`.
fn exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm/{}{name}", named::PREFIX)).exists()
}

/// A recognisable byte for position `i`.
fn pattern(i: usize) -> u8 {
    (i * 7 + 3) as u8
}

/// Writes the pattern over bytes 5..size-3 (unaligned at both ends).
fn fill(shm: SharedMemory) -> (usize, Option<String>) {
    let bytes: Vec<u8> = (5..shm.size() - 3).map(pattern).collect();
    shm.write_at(5, &bytes).unwrap();
    (shm.size(), shm.name().map(str::to_owned))
}

fn assert_filled(shm: &SharedMemory) {
    let mut all = vec![0xAA; shm.size()];
    shm.read_at(0, &mut all).unwrap();
    for (i, b) in all.iter().enumerate() {
        let want = if (5..shm.size() - 3).contains(&i) {
            pattern(i)
        } else {
            0
        };
        assert_eq!(*b, want, "byte {i}");
    }
}

#[test]
fn shared_memory_written_by_a_child_is_read_by_the_parent() {
    for method in METHODS {
        let shm = SharedMemory::new(10_007).unwrap();
        let mut p = Process::builder()
            .start_method(method)
            .spawn(fill, shm.clone())
            .unwrap();
        // The child saw the size the parent asked for, and no name.
        assert_eq!(p.join().unwrap(), (10_007, None));
        assert_filled(&shm);
        assert_eq!(shm.name(), None);
        // Unlinking anonymous memory does nothing (it has no name).
        shm.unlink().unwrap();
    }
}

#[test]
fn named_shared_memory_is_opened_by_name_in_a_child() {
    fn open_and_fill(name: String) -> (usize, Option<String>) {
        fill(SharedMemory::open_named(&name).unwrap())
    }
    let name = unique("named-shm");
    let shm = SharedMemory::create_named(&name, 5000).unwrap();
    assert_eq!(shm.name(), Some(name.as_str()));
    assert!(exists(&name));
    let mut p = Process::spawn(open_and_fill, name.clone()).unwrap();
    assert_eq!(p.join().unwrap(), (5000, Some(name.clone())));
    assert_filled(&shm);
    // The creator's last handle takes the name with it.
    let clone = shm.clone();
    drop(shm);
    assert!(exists(&name));
    drop(clone);
    assert!(!exists(&name));
    let err = SharedMemory::open_named(&name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Removes a name when dropped, also when the test fails half-way.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = named::remove(&self.0);
    }
}

fn report(shm: SharedMemory) -> (Option<String>, usize) {
    (shm.name().map(str::to_owned), shm.size())
}

#[test]
fn a_named_handle_sent_to_a_child_keeps_its_name() {
    let name = unique("sent-name");
    let _cleanup = RemoveOnDrop(name.clone());
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    let mut p = Process::spawn(report, shm.clone()).unwrap();
    assert_eq!(p.join().unwrap(), (Some(name.clone()), 64));
    shm.unlink().unwrap();
    assert!(!exists(&name));
}

#[test]
fn a_name_sent_to_a_child_goes_with_the_creators_last_handle() {
    let name = unique("sent-then-dropped");
    let _cleanup = RemoveOnDrop(name.clone());
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    let mut p = Process::spawn(report, shm.clone()).unwrap();
    assert_eq!(p.join().unwrap(), (Some(name.clone()), 64));
    drop(shm);
    assert!(!exists(&name));
}

#[test]
fn out_of_range_access_is_invalid_input_and_changes_nothing() {
    let shm = SharedMemory::new(100).unwrap();
    shm.write_at(0, &[1; 100]).unwrap();
    let mut two = [9u8; 2];
    for (offset, len) in [(99, 2), (100, 1), (101, 0), (usize::MAX, 2)] {
        let err = shm.read_at(offset, &mut two[..len]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "read {offset}+{len}");
        let err = shm.write_at(offset, &[7; 2][..len]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "write {offset}+{len}");
    }
    assert_eq!(two, [9, 9]);
    // Ranges that end exactly at the end are fine, also empty ones.
    shm.read_at(98, &mut two).unwrap();
    assert_eq!(two, [1, 1]);
    shm.write_at(100, &[]).unwrap();
    let mut all = [0u8; 100];
    shm.read_at(0, &mut all).unwrap();
    assert_eq!(all, [1; 100]);
}

#[test]
fn a_size_of_zero_is_invalid_input_and_leaves_no_name() {
    assert_eq!(
        SharedMemory::new(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let name = unique("zero");
    assert_eq!(
        SharedMemory::create_named(&name, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(!exists(&name));
}

#[test]
fn unlink_removes_the_name_and_keeps_the_memory() {
    fn read_one(shm: SharedMemory) -> u8 {
        let mut b = [0];
        shm.read_at(3, &mut b).unwrap();
        b[0]
    }
    let name = unique("unlink");
    let shm = SharedMemory::create_named(&name, 8).unwrap();
    shm.write_at(3, &[42]).unwrap();
    shm.unlink().unwrap();
    assert!(!exists(&name));
    assert_eq!(
        SharedMemory::open_named(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Still shared with a child after unlinking.
    assert_eq!(
        Process::spawn(read_one, shm.clone())
            .unwrap()
            .join()
            .unwrap(),
        42
    );
    assert_eq!(shm.unlink().unwrap_err().kind(), ErrorKind::NotFound);
    // The name can be reused, and unlinking the old handle leaves the new
    // object's name alone.
    let other = SharedMemory::create_named(&name, 8).unwrap();
    assert_eq!(shm.unlink().unwrap_err().kind(), ErrorKind::NotFound);
    assert!(exists(&name));
    drop(shm);
    assert!(exists(&name));
    drop(other);
    assert!(!exists(&name));
}

#[test]
fn opening_a_missing_name_is_not_found() {
    let name = unique("missing");
    assert_eq!(
        SharedMemory::open_named(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        ShareableList::open_named(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn opening_the_wrong_kind_is_invalid_data() {
    let list_name = unique("kind-list");
    let shm_name = unique("kind-shm");
    let list = ShareableList::create_named(&list_name, &[Item::Int(1)]).unwrap();
    let shm = SharedMemory::create_named(&shm_name, 4096).unwrap();
    let err = SharedMemory::open_named(&list_name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    let err = ShareableList::open_named(&shm_name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    // A `Value` is neither.
    let value_name = unique("kind-value");
    let value = aiop::blocking::shared::Value::create_named(&value_name, 0u64).unwrap();
    assert_eq!(
        SharedMemory::open_named(&value_name).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    assert_eq!(
        ShareableList::open_named(&value_name).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    assert_eq!(list.get(0), Item::Int(1));
    assert_eq!(shm.size(), 4096);
    drop((list, shm, value));
    for name in [list_name, shm_name, value_name] {
        assert!(!exists(&name), "{name}");
    }
}

fn mixed() -> Vec<Item> {
    vec![
        Item::Int(-7),
        Item::Float(2.5),
        Item::Bool(true),
        Item::Str("howdy, ünicode".into()),
        Item::Bytes(vec![0, 1, 0, 255]),
        Item::None,
        Item::Int(i64::MAX),
        Item::Str(String::new()),
    ]
}

#[test]
fn a_list_of_mixed_items_round_trips_through_a_child() {
    fn read_all(list: ShareableList) -> Vec<Item> {
        (0..list.len()).map(|i| list.get(i)).collect()
    }
    for method in METHODS {
        let list = ShareableList::new(&mixed()).unwrap();
        assert_eq!(list.to_vec(), mixed());
        let mut p = Process::builder()
            .start_method(method)
            .spawn(read_all, list.clone())
            .unwrap();
        assert_eq!(p.join().unwrap(), mixed());
        assert_eq!(list.len(), 8);
        assert_eq!(list.count(&Item::Int(-7)), 1);
        assert_eq!(list.index(&Item::None), Some(5));
        assert_eq!(list.index(&Item::Int(1)), None);
        // Int(1) and Bool(true) differ, unlike Python's 1 == True.
        assert_eq!(list.count(&Item::Int(1)), 0);
    }
}

#[test]
fn a_set_in_a_child_is_seen_by_the_parent() {
    fn change(list: ShareableList) {
        list.set(0, "a str!").unwrap();
        list.set(3, 99).unwrap();
        list.set(5, vec![1u8, 2, 3]).unwrap();
    }
    let list = ShareableList::new(&mixed()).unwrap();
    Process::spawn(change, list.clone())
        .unwrap()
        .join()
        .unwrap();
    let mut want = mixed();
    want[0] = Item::Str("a str!".into());
    want[3] = Item::Int(99);
    want[5] = Item::Bytes(vec![1, 2, 3]);
    assert_eq!(list.to_vec(), want);
    assert_eq!(list.count(&Item::Int(99)), 1);
}

#[test]
fn a_too_long_str_is_an_error_that_keeps_the_old_item() {
    let list = ShareableList::new(&["hello".into(), Item::Bytes(vec![1; 9])]).unwrap();
    assert_eq!(list.capacity(0), 8);
    assert_eq!(list.capacity(1), 16);
    let err = list.set(0, "nine byte").unwrap_err();
    assert_eq!((err.index(), err.capacity()), (0, 8));
    assert!(err.to_string().contains("9 bytes"), "{err}");
    assert_eq!(err.into_inner(), Item::Str("nine byte".into()));
    assert_eq!(list.get(0), Item::Str("hello".into()));
    let err = list.set(1, vec![2u8; 17]).unwrap_err();
    assert_eq!(err.capacity(), 16);
    assert_eq!(list.get(1), Item::Bytes(vec![1; 9]));
    // Exactly the capacity fits.
    list.set(0, "8 bytes!").unwrap();
    assert_eq!(list.get(0), Item::Str("8 bytes!".into()));
}

#[test]
fn a_position_can_switch_type_within_its_storage() {
    let list = ShareableList::new(&[Item::Int(1), "sixteen bytes..".into()]).unwrap();
    assert_eq!(list.capacity(0), 8);
    assert_eq!(list.capacity(1), 16);
    let fits: [(usize, Item); 8] = [
        (0, "8 bytes!".into()),
        (0, Item::Bytes(vec![9; 8])),
        (0, Item::None),
        (0, 1.5.into()),
        (1, Item::Int(-1)),
        (1, Item::Bool(false)),
        (1, Item::Bytes(vec![3; 16])),
        (1, "".into()),
    ];
    for (i, item) in fits {
        list.set(i, item.clone()).unwrap();
        assert_eq!(list.get(i), item);
    }
    assert!(list.set(0, "9 bytes!!").is_err());
    assert_eq!(list.to_vec(), [Item::Float(1.5), Item::Str(String::new())]);
}

#[test]
fn a_named_list_is_opened_by_name_in_a_child() {
    fn open_and_change(name: String) -> Vec<Item> {
        let list = ShareableList::open_named(&name).unwrap();
        assert_eq!(list.name(), Some(name.as_str()));
        list.set(1, Item::Bool(false)).unwrap();
        list.to_vec()
    }
    let name = unique("named-list");
    let list = ShareableList::create_named(&name, &mixed()).unwrap();
    assert!(exists(&name));
    let seen = Process::spawn(open_and_change, name.clone())
        .unwrap()
        .join()
        .unwrap();
    let mut want = mixed();
    want[1] = Item::Bool(false);
    assert_eq!(seen, want);
    assert_eq!(list.to_vec(), want);
    drop(list);
    assert!(!exists(&name));
    assert_eq!(
        ShareableList::open_named(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn readers_never_see_a_torn_item() {
    const ROUNDS: usize = 3000;
    fn flip((list, done): (ShareableList, Slot)) {
        for r in 0..ROUNDS {
            let item = if r % 2 == 0 {
                Item::Str("abcdefghijklmnopqrstuvw".into())
            } else {
                Item::Bytes(vec![0xEE; 17])
            };
            list.set(0, item).unwrap();
        }
        set_and_wake(&done, 0, 1);
    }
    let a = Item::Str("abcdefghijklmnopqrstuvw".into());
    let b = Item::Bytes(vec![0xEE; 17]);
    let first = Item::Str("x".repeat(24));
    let list = ShareableList::new(std::slice::from_ref(&first)).unwrap();
    let done = Slot::new().unwrap();
    let mut p = Process::spawn(flip, (list.clone(), done.clone())).unwrap();
    // Read for as long as the child writes.
    while done.word(0).load(std::sync::atomic::Ordering::Acquire) == 0 {
        let got = list.get(0);
        assert!(got == a || got == b || got == first, "torn: {got:?}");
    }
    p.join().unwrap();
    // The child's last write (an odd round) is what stays.
    assert_eq!(list.get(0), b);
}

#[test]
fn a_name_left_by_a_killed_creator_is_stale_and_can_be_removed() {
    fn create_and_hang((name, ready): (String, Slot)) {
        let shm = SharedMemory::create_named(&name, 4096).unwrap();
        shm.write_at(0, b"left behind").unwrap();
        set_and_wake(&ready, 0, 1);
        park_forever();
    }
    let name = unique("stale");
    let ready = Slot::new().unwrap();
    let mut p = Process::spawn(create_and_hang, (name.clone(), ready.clone())).unwrap();
    wait_nonzero(&ready, 0);
    assert!(!named::is_stale(&name).unwrap());
    p.kill().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));
    assert!(named::is_stale(&name).unwrap());
    assert!(named::stale().unwrap().contains(&name));
    let err = SharedMemory::create_named(&name, 4096).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("stale"), "{err}");
    // What the dead creator wrote can still be read...
    let left = SharedMemory::open_named(&name).unwrap();
    let mut buf = [0u8; 11];
    left.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left behind");
    drop(left);
    // ...and the name removed.
    named::remove(&name).unwrap();
    assert!(!exists(&name));
    assert_eq!(
        named::is_stale(&name).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
