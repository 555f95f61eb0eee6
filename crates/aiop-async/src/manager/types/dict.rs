//! `DictProxy`: a map served by the manager (Python's `manager.dict()`).

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{decode, enc, items as list, opt};
use crate::manager::proxy::typed_proxy;
use crate::manager::served::lock;
use crate::manager::{Call, CallError, Manager, ManagerError, Proxy, Registry, Served};

const KIND: &str = "aiop.Dict";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |(): ()| Ok(Dict::default()));
}

/// The served map: encoded keys to encoded values, in insertion order.
#[derive(Default)]
struct Dict {
    state: Mutex<DictState>,
}

#[derive(Default)]
struct DictState {
    /// Insertion order: sequence number to (key, value).
    order: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    /// Key to sequence number.
    index: HashMap<Vec<u8>, u64>,
    next: u64,
}

impl DictState {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(seq) = self.index.get(&key) {
            let slot = self
                .order
                .get_mut(seq)
                .expect("indexed entries are ordered");
            return Some(std::mem::replace(&mut slot.1, value));
        }
        let seq = self.next;
        self.next += 1;
        self.index.insert(key.clone(), seq);
        self.order.insert(seq, (key, value));
        None
    }

    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let seq = self.index.remove(key)?;
        self.order.remove(&seq).map(|(_, v)| v)
    }

    fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.index
            .get(key)
            .and_then(|seq| self.order.get(seq))
            .map(|(_, v)| v)
    }
}

impl Served for Dict {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut d = lock(&self.state);
        match call.method() {
            "len" => call.reply(&(d.index.len() as u64)),
            "get" => call.reply(&d.get(call.raw_args())),
            "contains" => call.reply(&d.index.contains_key(call.raw_args())),
            "insert" => {
                let (k, v): (Vec<u8>, Vec<u8>) = call.args()?;
                let old = d.insert(k, v);
                call.reply(&old)
            }
            "remove" => {
                let old = d.remove(call.raw_args());
                call.reply(&old)
            }
            "setdefault" => {
                let (k, v): (Vec<u8>, Vec<u8>) = call.args()?;
                // The stored value's own encoding is the result.
                if let Some(old) = d.get(&k) {
                    return Ok(old.clone());
                }
                d.insert(k, v.clone());
                Ok(v)
            }
            "update" => {
                let items: Vec<(Vec<u8>, Vec<u8>)> = call.args()?;
                for (k, v) in items {
                    d.insert(k, v);
                }
                call.reply(&())
            }
            "popitem" => {
                let last = d.order.keys().next_back().copied();
                let item = last.and_then(|seq| d.order.remove(&seq));
                if let Some((k, _)) = &item {
                    d.index.remove(k);
                }
                call.reply(&item)
            }
            "keys" => call.reply(&d.order.values().map(|(k, _)| k).collect::<Vec<_>>()),
            "values" => call.reply(&d.order.values().map(|(_, v)| v).collect::<Vec<_>>()),
            "items" => call.reply(&d.order.values().collect::<Vec<_>>()),
            "clear" => {
                *d = DictState::default();
                call.reply(&())
            }
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to a map served by a manager: Python's `manager.dict()`
/// (`DictProxy`).
///
/// Keys and values are serde types; keys compare by their postcard
/// encoding (equal values of the usual key types encode equally; a key
/// containing a `HashMap` might not). Iteration ([`keys`](DictProxy::keys),
/// [`items`](DictProxy::items)) follows insertion order, as in Python. Each
/// method is one round trip to the server, atomic there; a read-modify-write
/// across two calls is not (hold a [`LockProxy`](crate::manager::LockProxy)
/// around it, or use [`setdefault`](DictProxy::setdefault)).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let d = manager.dict_blocking::<String, u32>()?;
/// d.insert_blocking(&"a".to_string(), &1)?;
/// assert_eq!(d.get_blocking(&"a".to_string())?, Some(1));
/// # Ok(()) }
/// ```
pub struct DictProxy<K, V> {
    proxy: Proxy,
    _types: PhantomData<fn() -> (K, V)>,
}

typed_proxy!(DictProxy<K, V>, KIND);

fn pair<K: Serialize, V: Serialize>(k: &K, v: &V) -> Result<Vec<u8>, ManagerError> {
    enc(&(enc(k)?, enc(v)?))
}

fn pairs<K: DeserializeOwned, V: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Vec<(K, V)>, ManagerError> {
    decode::<Vec<(Vec<u8>, Vec<u8>)>>(bytes)?
        .iter()
        .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
        .collect()
}

fn encode_items<'a, K, V>(
    items: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Result<Vec<u8>, ManagerError>
where
    K: Serialize + 'a,
    V: Serialize + 'a,
{
    let items: Vec<(Vec<u8>, Vec<u8>)> = items
        .into_iter()
        .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
        .collect::<Result<_, ManagerError>>()?;
    enc(&items)
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The number of entries (Python's `len(d)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`]. The same for every method here.
    pub async fn len(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw("len", enc(&())?, None).await?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// [`len`](DictProxy::len), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn len_blocking(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw_blocking("len", enc(&())?)?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// Whether the map is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len().await? == 0)
    }

    /// [`is_empty`](DictProxy::is_empty), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn is_empty_blocking(&self) -> Result<bool, ManagerError> {
        Ok(self.len_blocking()? == 0)
    }

    /// The value of `key` (Python's `d.get(key)`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        opt(&self.proxy.call_raw("get", enc(key)?, None).await?)
    }

    /// [`get`](DictProxy::get), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn get_blocking(&self, key: &K) -> Result<Option<V>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("get", enc(key)?)?)
    }

    /// Whether `key` has a value (Python's `key in d`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw("contains", enc(key)?, None).await?)
    }

    /// [`contains_key`](DictProxy::contains_key), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn contains_key_blocking(&self, key: &K) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("contains", enc(key)?)?)
    }

    /// Sets `key` to `value`; returns the value it replaces (Python's
    /// `d[key] = value`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn insert(&self, key: &K, value: &V) -> Result<Option<V>, ManagerError> {
        opt(&self
            .proxy
            .call_raw("insert", pair(key, value)?, None)
            .await?)
    }

    /// [`insert`](DictProxy::insert), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn insert_blocking(&self, key: &K, value: &V) -> Result<Option<V>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("insert", pair(key, value)?)?)
    }

    /// Removes `key`; returns its value (Python's `d.pop(key, None)`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        opt(&self.proxy.call_raw("remove", enc(key)?, None).await?)
    }

    /// [`remove`](DictProxy::remove), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn remove_blocking(&self, key: &K) -> Result<Option<V>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("remove", enc(key)?)?)
    }

    /// The value of `key`, setting it to `default` first if it has none, in
    /// one step on the server (Python's `d.setdefault(key, default)`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn setdefault(&self, key: &K, default: &V) -> Result<V, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("setdefault", pair(key, default)?, None)
                .await?,
        )
    }

    /// [`setdefault`](DictProxy::setdefault), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn setdefault_blocking(&self, key: &K, default: &V) -> Result<V, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw_blocking("setdefault", pair(key, default)?)?,
        )
    }

    /// Sets every `(key, value)` of `items`, in one step (Python's
    /// `d.update(items)`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn update<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), ManagerError>
    where
        K: 'a,
        V: 'a,
    {
        decode(
            &self
                .proxy
                .call_raw("update", encode_items(items)?, None)
                .await?,
        )
    }

    /// [`update`](DictProxy::update), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn update_blocking<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), ManagerError>
    where
        K: 'a,
        V: 'a,
    {
        decode(
            &self
                .proxy
                .call_raw_blocking("update", encode_items(items)?)?,
        )
    }

    /// Removes and returns the entry inserted last (Python's
    /// `d.popitem()`); `None` when empty.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn popitem(&self) -> Result<Option<(K, V)>, ManagerError> {
        pop_pair(&self.proxy.call_raw("popitem", enc(&())?, None).await?)
    }

    /// [`popitem`](DictProxy::popitem), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn popitem_blocking(&self) -> Result<Option<(K, V)>, ManagerError> {
        pop_pair(&self.proxy.call_raw_blocking("popitem", enc(&())?)?)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn keys(&self) -> Result<Vec<K>, ManagerError> {
        list(&self.proxy.call_raw("keys", enc(&())?, None).await?)
    }

    /// [`keys`](DictProxy::keys), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn keys_blocking(&self) -> Result<Vec<K>, ManagerError> {
        list(&self.proxy.call_raw_blocking("keys", enc(&())?)?)
    }

    /// The values, in insertion order of their keys.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn values(&self) -> Result<Vec<V>, ManagerError> {
        list(&self.proxy.call_raw("values", enc(&())?, None).await?)
    }

    /// [`values`](DictProxy::values), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn values_blocking(&self) -> Result<Vec<V>, ManagerError> {
        list(&self.proxy.call_raw_blocking("values", enc(&())?)?)
    }

    /// The entries, in insertion order (a copy: Python's `d.copy().items()`).
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        pairs(&self.proxy.call_raw("items", enc(&())?, None).await?)
    }

    /// [`items`](DictProxy::items), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn items_blocking(&self) -> Result<Vec<(K, V)>, ManagerError> {
        pairs(&self.proxy.call_raw_blocking("items", enc(&())?)?)
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub async fn clear(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("clear", enc(&())?, None).await?)
    }

    /// [`clear`](DictProxy::clear), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn clear_blocking(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("clear", enc(&())?)?)
    }
}

fn pop_pair<K: DeserializeOwned, V: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Option<(K, V)>, ManagerError> {
    match decode::<Option<(Vec<u8>, Vec<u8>)>>(bytes)? {
        Some((k, v)) => Ok(Some((decode(&k)?, decode(&v)?))),
        None => Ok(None),
    }
}

impl Manager {
    /// Creates an empty map on the server (Python's `manager.dict()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        DictProxy::from_proxy(self.create(KIND, &()).await?)
    }

    /// [`dict`](Manager::dict), blocking.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn dict_blocking<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        DictProxy::from_proxy(self.create_blocking(KIND, &())?)
    }
}
