//! Proxies: references to served objects, counted on the server.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use aiop_core::connection::Address;

use super::client::{Client, Undo};
use super::error::ManagerError;
use super::protocol::{self, Request};

/// One reference of this process's connection to a served object, given
/// back (`DecRef`) when the last proxy value sharing it is dropped.
pub(crate) struct Handle {
    pub(crate) client: Arc<Client>,
    pub(crate) object: u64,
    pub(crate) kind: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // `post` skips a connection inherited through fork (the parent's)
        // and one that has ended (the server let go already).
        self.client.post(&Request::DecRef {
            object: self.object,
        });
    }
}

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The owner id of blocking calls made on this thread.
    static THREAD_OWNER: u64 = NEXT_OWNER.fetch_add(1, Ordering::Relaxed) | (1 << 63);
}

fn thread_owner() -> u64 {
    THREAD_OWNER.with(|o| *o)
}

/// A reference to an object served by a manager, of any type: Python's
/// `BaseProxy`. The typed proxies ([`DictProxy`](super::DictProxy),
/// [`QueueProxy`](super::QueueProxy), ...) wrap one; a custom type's proxy
/// calls methods by name with [`call`](Proxy::call).
///
/// The object lives on the server while any proxy to it exists, in any
/// process. A proxy is `Send` and `Sync`, and cloning one is cheap (the
/// clones share one reference).
///
/// # Passing proxies
///
/// A proxy serializes, so it travels as a spawned process's argument,
/// inside a message on a [`Connection`](crate::connection::Connection), or
/// in a value stored in another served object. What travels is the
/// manager's address, **its authkey**, the object's id and a token under
/// which the server keeps the object alive until the receiver takes its own
/// reference. The receiver connects to the manager (once per process and
/// address) when it deserializes the proxy. Send proxies only through
/// channels you would trust with the authkey.
///
/// Each serialization lends one reference, which the first deserialization
/// of those bytes takes over. Two consequences:
///
/// * Bytes that are never deserialized (a message lost with a receiver that
///   was killed, a proxy serialized for a log, a stored proxy removed
///   unread) keep the object alive until the server stops.
/// * Bytes deserialized more than once (a proxy stored in a served dict and
///   read by several processes) give the first reader the lent reference;
///   a later reader gets one of its own only while the object still lives.
///   Once every reader has dropped its proxy the object is gone, and a
///   later read yields a proxy whose calls fail with
///   [`RemoteError::NO_SUCH_OBJECT`](super::RemoteError::NO_SUCH_OBJECT).
///   To share an object through a served container, store a name bound
///   with [`Manager::publish`](super::Manager::publish) instead of the
///   proxy (Python's nested proxies have no exact counterpart here).
///
/// # Owners
///
/// Objects that belong to a caller (an [`RLockProxy`](super::RLockProxy), a
/// [`ConditionProxy`](super::ConditionProxy)) know callers as the thread
/// for `_blocking` methods and as the proxy value for async ones: each clone
/// of a proxy is a distinct owner, so give each task its own clone.
pub struct Proxy {
    handle: Arc<Handle>,
    owner: u64,
}

impl Clone for Proxy {
    fn clone(&self) -> Proxy {
        Proxy {
            handle: self.handle.clone(),
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.handle.kind)
            .field("id", &self.handle.object)
            .field("address", self.handle.client.address())
            .finish()
    }
}

pub(crate) fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>, ManagerError> {
    protocol::encode(args).map_err(|e| ManagerError::Encode(e.to_string()))
}

pub(crate) fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, ManagerError> {
    protocol::decode(bytes).map_err(ManagerError::Decode)
}

impl Proxy {
    pub(crate) fn from_handle(handle: Handle) -> Proxy {
        Proxy {
            handle: Arc::new(handle),
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The served object's type name (as registered; the built-in types'
    /// names start with `aiop.`).
    pub fn kind(&self) -> &str {
        &self.handle.kind
    }

    /// The object's id on the server.
    pub fn id(&self) -> u64 {
        self.handle.object
    }

    /// The address of the manager serving the object.
    pub fn address(&self) -> &Address {
        self.handle.client.address()
    }

    /// Whether `other` refers to the same served object.
    pub fn same_as(&self, other: &Proxy) -> bool {
        self.handle.object == other.handle.object
            && self.handle.client.address() == other.handle.client.address()
    }

    /// Calls `method` with `args` on the served object and decodes its
    /// result as `R`.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped after the request went out, the server is
    /// told to interrupt the call if it still waits; a result that arrives
    /// anyway is dropped. (The built-in proxies also undo such a result:
    /// an item taken from a queue is put back, a lock taken is released.)
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] with the server's error,
    /// [`ManagerError::ServerGone`] when the connection ends first,
    /// [`ManagerError::Encode`] / [`ManagerError::Decode`] when the
    /// arguments or the result do not fit their types.
    pub async fn call<A, R>(&self, method: &str, args: &A) -> Result<R, ManagerError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let bytes = self.call_raw(method, encode_args(args)?, None).await?;
        decode_result(&bytes)
    }

    /// [`call`](Proxy::call), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`call`](Proxy::call).
    pub fn call_blocking<A, R>(&self, method: &str, args: &A) -> Result<R, ManagerError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let bytes = self.call_raw_blocking(method, encode_args(args)?)?;
        decode_result(&bytes)
    }

    /// Calls `method` without waiting for (or receiving) its result; its
    /// errors are lost. Requests of one process reach the server in order,
    /// so a later call sees its effect.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] when the arguments do not serialize.
    pub fn call_no_reply<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<(), ManagerError> {
        self.post_raw(method, encode_args(args)?, thread_owner());
        Ok(())
    }

    pub(crate) async fn call_raw(
        &self,
        method: &str,
        args: Vec<u8>,
        undo: Option<(&'static str, Option<Vec<u8>>)>,
    ) -> Result<Vec<u8>, ManagerError> {
        let client = &self.handle.client;
        let id = client.next_id();
        let request = Request::Call {
            id,
            object: self.handle.object,
            method: method.to_string(),
            owner: self.owner,
            args,
        };
        let undo = undo.map(|(method, args)| Undo {
            object: self.handle.object,
            method,
            owner: self.owner,
            args,
        });
        client.call(id, &request, undo).await
    }

    pub(crate) fn call_raw_blocking(
        &self,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, ManagerError> {
        let client = &self.handle.client;
        let id = client.next_id();
        client.call_blocking(
            id,
            &Request::Call {
                id,
                object: self.handle.object,
                method: method.to_string(),
                owner: thread_owner(),
                args,
            },
        )
    }

    pub(crate) fn post_raw(&self, method: &str, args: Vec<u8>, owner: u64) {
        self.handle.client.post(&Request::Call {
            id: 0,
            object: self.handle.object,
            method: method.to_string(),
            owner,
            args,
        });
    }

    /// The owner id of this proxy's async calls.
    pub(crate) fn async_owner(&self) -> u64 {
        self.owner
    }

    /// The owner id of blocking calls on this thread.
    pub(crate) fn blocking_owner() -> u64 {
        thread_owner()
    }

    /// Checks that this proxy's object is of `kind`.
    pub(crate) fn expect_kind(self, kind: &str) -> Result<Proxy, ManagerError> {
        if self.handle.kind == kind {
            Ok(self)
        } else {
            Err(ManagerError::Decode(format!(
                "the proxy refers to a {:?}, not a {kind:?}",
                self.handle.kind
            )))
        }
    }
}

/// A proxy type: [`Proxy`] itself or a typed one ([`DictProxy`](super::DictProxy),
/// [`QueueProxy`](super::QueueProxy), ...), for the methods that hand out
/// proxies of any type ([`Manager::lookup`](super::Manager::lookup)).
pub trait ProxyType: Sized {
    /// The served type's name (`None` for [`Proxy`], which takes any).
    const KIND: Option<&'static str>;

    /// Wraps an untyped proxy.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] when the proxy refers to an object of
    /// another type.
    fn from_proxy(proxy: Proxy) -> Result<Self, ManagerError>;

    /// The untyped proxy.
    fn as_proxy(&self) -> &Proxy;
}

impl ProxyType for Proxy {
    const KIND: Option<&'static str> = None;

    fn from_proxy(proxy: Proxy) -> Result<Proxy, ManagerError> {
        Ok(proxy)
    }

    fn as_proxy(&self) -> &Proxy {
        self
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    address: String,
    authkey: Option<Vec<u8>>,
    kind: String,
    object: u64,
    token: u128,
}

fn random_token() -> u128 {
    let b = super::random_bytes(16);
    u128::from_le_bytes(b.try_into().expect("16 bytes"))
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let client = &self.handle.client;
        if !client.is_ours() {
            return Err(S::Error::custom(
                "a proxy inherited through fork cannot be passed on: pass it to the child as an argument instead",
            ));
        }
        let token = random_token();
        client.post(&Request::Lend {
            object: self.handle.object,
            token,
        });
        Wire {
            address: client.address().to_string(),
            authkey: client.authkey().map(<[u8]>::to_vec),
            kind: self.handle.kind.clone(),
            object: self.handle.object,
            token,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Proxy, D::Error> {
        let w = Wire::deserialize(d)?;
        let address: Address = w.address.parse().map_err(D::Error::custom)?;
        let client = Client::shared(&address, w.authkey.as_deref()).map_err(|e| {
            D::Error::custom(format!("connecting to the manager at {address}: {e}"))
        })?;
        client.post(&Request::Adopt {
            object: w.object,
            token: w.token,
        });
        Ok(Proxy::from_handle(Handle {
            client,
            object: w.object,
            kind: w.kind,
        }))
    }
}

/// Implements the common parts of a typed proxy: `Clone`, `Debug`, serde
/// (checking the served type), and the conversions to and from [`Proxy`].
macro_rules! typed_proxy {
    ($name:ident, $kind:expr) => {
        typed_proxy!($name<>, $kind);
    };
    ($name:ident <$($g:ident),*>, $kind:expr) => {
        impl<$($g),*> $name<$($g),*> {
            /// The served type's name.
            pub const KIND: &'static str = $kind;

            /// The untyped proxy.
            pub fn as_proxy(&self) -> &$crate::manager::Proxy {
                &self.proxy
            }

            /// Turns an untyped proxy into this typed one.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Decode`](crate::manager::ManagerError::Decode)
            /// when the proxy refers to an object of another type.
            pub fn from_proxy(
                proxy: $crate::manager::Proxy,
            ) -> Result<Self, $crate::manager::ManagerError> {
                Ok($name {
                    proxy: proxy.expect_kind($kind)?,
                    _types: std::marker::PhantomData,
                })
            }

            /// Whether `other` refers to the same served object.
            pub fn same_as(&self, other: &Self) -> bool {
                self.proxy.same_as(&other.proxy)
            }
        }

        impl<$($g),*> $crate::manager::ProxyType for $name<$($g),*> {
            const KIND: Option<&'static str> = Some($kind);

            fn from_proxy(
                proxy: $crate::manager::Proxy,
            ) -> Result<Self, $crate::manager::ManagerError> {
                $name::from_proxy(proxy)
            }

            fn as_proxy(&self) -> &$crate::manager::Proxy {
                &self.proxy
            }
        }

        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name {
                    proxy: self.proxy.clone(),
                    _types: std::marker::PhantomData,
                }
            }
        }

        impl<$($g),*> std::fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }

        impl<$($g),*> serde::Serialize for $name<$($g),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.proxy.serialize(s)
            }
        }

        impl<'de, $($g),*> serde::Deserialize<'de> for $name<$($g),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let proxy = $crate::manager::Proxy::deserialize(d)?;
                Self::from_proxy(proxy).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
}
pub(crate) use typed_proxy;
