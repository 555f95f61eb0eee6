//! Scratch smoke test of the manager core (replaced by the full suites).
aiop::test_support!();

use aiop::manager::{DictProxy, Manager, QueueProxy};
use aiop::process::Process;

fn child((d, q): (DictProxy<String, u64>, QueueProxy<u64>)) -> u64 {
    let x = q.get_blocking().unwrap();
    d.insert_blocking(&"child".to_string(), &(x * 2)).unwrap();
    d.len_blocking().unwrap() as u64
}

#[test]
fn smoke() {
    let m = Manager::start().unwrap();
    let d = m.dict_blocking::<String, u64>().unwrap();
    let q = m.queue_blocking::<u64>(0).unwrap();
    d.insert_blocking(&"a".into(), &1).unwrap();
    assert_eq!(d.get_blocking(&"a".into()).unwrap(), Some(1));
    let mut p = Process::spawn(child, (d.clone(), q.clone())).unwrap();
    q.put_blocking(&21).unwrap();
    assert_eq!(p.join_blocking().unwrap(), 2);
    assert_eq!(d.get_blocking(&"child".into()).unwrap(), Some(42));
    futures_lite::future::block_on(async {
        assert_eq!(d.get(&"child".into()).await.unwrap(), Some(42));
        assert_eq!(q.try_get().await.unwrap(), None);
        q.put(&5).await.unwrap();
        assert_eq!(q.get().await.unwrap(), 5);
    });
    let (objects, clients) = m.stats_blocking().unwrap();
    assert_eq!((objects, clients), (2, 1));
    drop((d, q));
    let (objects, _) = m.stats_blocking().unwrap();
    assert_eq!(objects, 0);
    m.shutdown_blocking().unwrap();
}
