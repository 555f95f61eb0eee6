//! Helpers shared by the manager tests: mirrors of the wire protocol for
//! clients that speak it by hand, and looks at a server's state.

use aiop::manager::{Manager, ProxyType, RemoteError};
use serde::{Deserialize, Serialize};

/// A mirror of the manager's wire request (`protocol::Request`), same
/// variant order, for a client that speaks the protocol by hand.
#[derive(Serialize)]
pub enum Request {
    Create {
        id: u64,
        kind: String,
        args: Vec<u8>,
    },
    Call {
        id: u64,
        object: u64,
        method: String,
        owner: u64,
        args: Vec<u8>,
    },
    Cancel {
        id: u64,
    },
    DecRef {
        object: u64,
    },
    Lend {
        object: u64,
        token: u128,
    },
    Adopt {
        object: u64,
        token: u128,
    },
    Publish {
        id: u64,
        name: String,
        object: Option<u64>,
    },
    Lookup {
        id: u64,
        name: String,
    },
    Stats {
        id: u64,
    },
    Shutdown {
        id: u64,
    },
}

/// A mirror of the server's reply (`protocol::Reply`).
#[derive(Deserialize, Debug)]
pub struct Reply {
    pub id: u64,
    pub result: Result<Vec<u8>, RemoteError>,
}

/// A mirror of a serialized proxy (`proxy::Wire`).
#[derive(Serialize, Deserialize)]
pub struct Wire {
    pub address: String,
    pub authkey: Option<Vec<u8>>,
    pub kind: String,
    pub object: u64,
    pub token: u128,
}

/// A connection to `m`'s server that speaks the protocol by hand.
pub fn raw_client(m: &Manager) -> aiop::blocking::connection::Connection {
    aiop::blocking::connection::client(m.address(), m.authkey()).expect("raw client connects")
}

/// A manager's object count (its stats' first number).
pub fn objects(m: &Manager) -> u64 {
    m.stats_blocking().expect("stats").0
}

/// A proxy to `proxy`'s object on a connection of its own, to look at the
/// object later without reading the connection of `m` (made before the
/// call under test: making it reads that connection).
pub fn watcher<P: ProxyType>(m: &Manager, proxy: &P) -> P {
    let name = format!("watched-{}", proxy.as_proxy().id());
    m.publish_blocking(&name, proxy).unwrap();
    let other = Manager::connect_blocking(m.address(), m.authkey()).unwrap();
    let watcher = other.lookup_blocking(&name).unwrap().expect("published");
    assert!(m.unpublish_blocking(&name).unwrap());
    watcher
}
