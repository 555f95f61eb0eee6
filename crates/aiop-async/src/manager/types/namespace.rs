//! `NamespaceProxy`: named values served by the manager (Python's
//! `manager.Namespace()`).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{decode, enc, opt};
use crate::manager::proxy::typed_proxy;
use crate::manager::served::lock;
use crate::manager::{Call, CallError, Manager, ManagerError, Proxy, Registry, Served};

const KIND: &str = "aiop.Namespace";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |(): ()| Ok(Namespace::default()));
}

/// The served namespace: names to encoded values, sorted by name.
#[derive(Default)]
struct Namespace {
    values: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Served for Namespace {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut ns = lock(&self.values);
        match call.method() {
            "get" => {
                let name: String = call.args()?;
                call.reply(&ns.get(&name))
            }
            "set" => {
                let (name, value): (String, Vec<u8>) = call.args()?;
                ns.insert(name, value);
                call.reply(&())
            }
            "remove" => {
                let name: String = call.args()?;
                call.reply(&ns.remove(&name).is_some())
            }
            "contains" => {
                let name: String = call.args()?;
                call.reply(&ns.contains_key(&name))
            }
            "names" => call.reply(&ns.keys().collect::<Vec<_>>()),
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to a namespace served by a manager: Python's
/// `manager.Namespace()` (`NamespaceProxy`).
///
/// A namespace holds named serde values, each of its own type. Values are
/// stored encoded and are not self-describing: [`get`](NamespaceProxy::get)
/// decodes the stored value as the type asked for, and fails with
/// [`ManagerError::Decode`] when it does not decode as one, but a value of
/// another type whose encoding happens to decode (a `u8` read as a `u32`)
/// is returned as it decodes. Each method is one round trip to the server,
/// atomic there.
///
/// | Python | `NamespaceProxy` |
/// |---|---|
/// | `ns.x` | [`get`](NamespaceProxy::get)`("x")` (`None` instead of `AttributeError`) |
/// | `ns.x = v`, `del ns.x` | [`set`](NamespaceProxy::set), [`remove`](NamespaceProxy::remove) |
/// | `hasattr(ns, "x")`, `vars(ns)` | [`contains`](NamespaceProxy::contains), [`names`](NamespaceProxy::names) |
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let ns = manager.namespace_blocking()?;
/// ns.set_blocking("x", &10u32)?;
/// ns.set_blocking("y", &"hello".to_string())?;
/// assert_eq!(ns.get_blocking::<u32>("x")?, Some(10));
/// assert_eq!(ns.names_blocking()?, ["x", "y"]);
/// # Ok(()) }
/// ```
pub struct NamespaceProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

// In braces, which rustfmt leaves alone: it would drop the `<>` the macro
// needs for a proxy without type parameters.
typed_proxy! { NamespaceProxy<>, KIND }

fn named<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Vec<u8>, ManagerError> {
    enc(&(name, enc(value)?))
}

impl NamespaceProxy {
    /// The value named `name`, decoded as a `T`; `None` when there is none
    /// (Python's `ns.name`, which raises `AttributeError` instead).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] when the stored value does not decode as a
    /// `T`; [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`].
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        opt(&self.proxy.call_raw("get", enc(name)?, None).await?)
    }

    /// [`get`](NamespaceProxy::get), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](NamespaceProxy::get).
    pub fn get_blocking<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("get", enc(name)?)?)
    }

    /// Sets the value named `name` to `value`, replacing any value of that
    /// name, of whatever type (Python's `ns.name = value`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] when `value` does not serialize;
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`]. The same for the methods below.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("set", named(name, value)?, None)
                .await?,
        )
    }

    /// [`set`](NamespaceProxy::set), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub fn set_blocking<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("set", named(name, value)?)?)
    }

    /// Removes the value named `name`; false when there is none (Python's
    /// `del ns.name`, which raises `AttributeError` instead).
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub async fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw("remove", enc(name)?, None).await?)
    }

    /// [`remove`](NamespaceProxy::remove), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub fn remove_blocking(&self, name: &str) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("remove", enc(name)?)?)
    }

    /// Whether a value is named `name` (Python's `hasattr(ns, name)`).
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub async fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw("contains", enc(name)?, None).await?)
    }

    /// [`contains`](NamespaceProxy::contains), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub fn contains_blocking(&self, name: &str) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("contains", enc(name)?)?)
    }

    /// The names of the values, sorted (Python's `sorted(vars(ns))`).
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub async fn names(&self) -> Result<Vec<String>, ManagerError> {
        decode(&self.proxy.call_raw("names", enc(&())?, None).await?)
    }

    /// [`names`](NamespaceProxy::names), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](NamespaceProxy::set).
    pub fn names_blocking(&self) -> Result<Vec<String>, ManagerError> {
        decode(&self.proxy.call_raw_blocking("names", enc(&())?)?)
    }
}

impl Manager {
    /// Creates an empty namespace on the server (Python's
    /// `manager.Namespace()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        NamespaceProxy::from_proxy(self.create(KIND, &()).await?)
    }

    /// [`namespace`](Manager::namespace), blocking.
    ///
    /// # Errors
    ///
    /// As [`namespace`](Manager::namespace).
    pub fn namespace_blocking(&self) -> Result<NamespaceProxy, ManagerError> {
        NamespaceProxy::from_proxy(self.create_blocking(KIND, &())?)
    }
}
