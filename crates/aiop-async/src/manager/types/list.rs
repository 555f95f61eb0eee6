//! `ListProxy`: a sequence served by the manager (Python's `manager.list()`).

use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{at, decode, enc, encode_all, items as list, opt, out_of_range};
use crate::manager::proxy::typed_proxy;
use crate::manager::served::lock;
use crate::manager::{Call, CallError, Manager, ManagerError, Proxy, Registry, Served};

const KIND: &str = "aiop.List";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |items: Vec<Vec<u8>>| {
        Ok(List {
            items: Mutex::new(items),
        })
    });
}

/// The served sequence: encoded items.
struct List {
    items: Mutex<Vec<Vec<u8>>>,
}

/// `index` as a position of `items`, if it is one.
fn position(index: u64, len: usize) -> Option<usize> {
    usize::try_from(index).ok().filter(|&i| i < len)
}

impl Served for List {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut l = lock(&self.items);
        match call.method() {
            "len" => call.reply(&(l.len() as u64)),
            "get" => {
                let index: u64 = call.args()?;
                call.reply(&position(index, l.len()).map(|i| &l[i]))
            }
            "set" => {
                let (index, item): (u64, Vec<u8>) = call.args()?;
                let Some(i) = position(index, l.len()) else {
                    return Err(out_of_range(index, l.len(), "a list"));
                };
                l[i] = item;
                call.reply(&())
            }
            "push" => {
                l.push(call.raw_args().to_vec());
                call.reply(&())
            }
            "extend" => {
                let items: Vec<Vec<u8>> = call.args()?;
                l.extend(items);
                call.reply(&())
            }
            "insert" => {
                let (index, item): (u64, Vec<u8>) = call.args()?;
                let i = usize::try_from(index).unwrap_or(usize::MAX).min(l.len());
                l.insert(i, item);
                call.reply(&())
            }
            "pop" => {
                let item = l.pop();
                call.reply(&item)
            }
            "pop_at" => {
                let index: u64 = call.args()?;
                let Some(i) = position(index, l.len()) else {
                    return Err(out_of_range(index, l.len(), "a list"));
                };
                // The item's own encoding is the reply.
                Ok(l.remove(i))
            }
            "remove" => {
                let found = l.iter().position(|x| x == call.raw_args());
                if let Some(i) = found {
                    l.remove(i);
                }
                call.reply(&found.is_some())
            }
            "index_of" => {
                let found = l.iter().position(|x| x == call.raw_args());
                call.reply(&found.map(|i| i as u64))
            }
            "count" => {
                let n = l.iter().filter(|x| *x == call.raw_args()).count();
                call.reply(&(n as u64))
            }
            "reverse" => {
                l.reverse();
                call.reply(&())
            }
            "clear" => {
                l.clear();
                call.reply(&())
            }
            "to_vec" => call.reply(&*l),
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to a sequence served by a manager: Python's `manager.list()`
/// (`ListProxy`).
///
/// Items are serde values; [`remove`](ListProxy::remove),
/// [`index_of`](ListProxy::index_of), [`contains`](ListProxy::contains) and
/// [`count`](ListProxy::count) compare them by their postcard encoding (equal
/// values of the usual types encode equally; one containing a `HashMap`
/// might not). Indices are positions from the front (no negative indices).
/// Each method is one round trip to the server, atomic there; a
/// read-modify-write across two calls is not (hold a
/// [`LockProxy`](crate::manager::LockProxy) around it).
///
/// | Python | `ListProxy` |
/// |---|---|
/// | `len(l)`, `l[i]`, `l[i] = v` | [`len`](ListProxy::len), [`get`](ListProxy::get), [`set`](ListProxy::set) |
/// | `l.append(v)`, `l.extend(vs)`, `l.insert(i, v)` | [`push`](ListProxy::push), [`extend`](ListProxy::extend), [`insert`](ListProxy::insert) |
/// | `l.pop()`, `l.pop(i)`, `l.remove(v)` | [`pop`](ListProxy::pop), [`pop_at`](ListProxy::pop_at), [`remove`](ListProxy::remove) |
/// | `l.index(v)`, `v in l`, `l.count(v)` | [`index_of`](ListProxy::index_of), [`contains`](ListProxy::contains), [`count`](ListProxy::count) |
/// | `l.reverse()`, `l.clear()`, `l[:]` | [`reverse`](ListProxy::reverse), [`clear`](ListProxy::clear), [`to_vec`](ListProxy::to_vec) |
///
/// # Cancel safety
///
/// A call's effect on the server does not depend on its future: a dropped
/// [`pop`](ListProxy::pop) or [`pop_at`](ListProxy::pop_at) future whose
/// request the server had already run has removed its item, which is lost.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let l = manager.list_blocking::<u32>(&[1, 2])?;
/// l.push_blocking(&3)?;
/// assert_eq!(l.to_vec_blocking()?, [1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct ListProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

typed_proxy!(ListProxy<T>, KIND);

impl<T> ListProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    /// The number of items (Python's `len(l)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`]. The same for every method here.
    pub async fn len(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw("len", enc(&())?, None).await?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// [`len`](ListProxy::len), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn len_blocking(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw_blocking("len", enc(&())?)?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len().await? == 0)
    }

    /// [`is_empty`](ListProxy::is_empty), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn is_empty_blocking(&self) -> Result<bool, ManagerError> {
        Ok(self.len_blocking()? == 0)
    }

    /// The item at `index`; `None` when `index` is not below the length
    /// (Python's `l[i]`, which raises `IndexError` instead).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        opt(&self
            .proxy
            .call_raw("get", enc(&(index as u64))?, None)
            .await?)
    }

    /// [`get`](ListProxy::get), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn get_blocking(&self, index: usize) -> Result<Option<T>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("get", enc(&(index as u64))?)?)
    }

    /// Replaces the item at `index` with `item` (Python's `l[i] = item`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::OUT_OF_RANGE`](crate::manager::RemoteError::OUT_OF_RANGE) when `index` is not below the length
    /// (nothing changes); as [`len`](ListProxy::len).
    pub async fn set(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("set", at(index, item)?, None).await?)
    }

    /// [`set`](ListProxy::set), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](ListProxy::set).
    pub fn set_blocking(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("set", at(index, item)?)?)
    }

    /// Adds `item` at the end (Python's `l.append(item)`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn push(&self, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("push", enc(item)?, None).await?)
    }

    /// [`push`](ListProxy::push), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn push_blocking(&self, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("push", enc(item)?)?)
    }

    /// Adds every item of `items` at the end, in one step (Python's
    /// `l.extend(items)`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn extend<'a>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let items = enc(&encode_all(items)?)?;
        decode(&self.proxy.call_raw("extend", items, None).await?)
    }

    /// [`extend`](ListProxy::extend), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn extend_blocking<'a>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let items = enc(&encode_all(items)?)?;
        decode(&self.proxy.call_raw_blocking("extend", items)?)
    }

    /// Inserts `item` before position `index`; an `index` past the end
    /// appends, as in Python's `l.insert(i, item)`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn insert(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("insert", at(index, item)?, None)
                .await?,
        )
    }

    /// [`insert`](ListProxy::insert), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn insert_blocking(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("insert", at(index, item)?)?)
    }

    /// Removes and returns the last item; `None` when empty (Python's
    /// `l.pop()`, which raises `IndexError` instead).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn pop(&self) -> Result<Option<T>, ManagerError> {
        opt(&self.proxy.call_raw("pop", enc(&())?, None).await?)
    }

    /// [`pop`](ListProxy::pop), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn pop_blocking(&self) -> Result<Option<T>, ManagerError> {
        opt(&self.proxy.call_raw_blocking("pop", enc(&())?)?)
    }

    /// Removes and returns the item at `index` (Python's `l.pop(i)`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::OUT_OF_RANGE`](crate::manager::RemoteError::OUT_OF_RANGE) when `index` is not below the length
    /// (nothing changes); as [`len`](ListProxy::len).
    pub async fn pop_at(&self, index: usize) -> Result<T, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("pop_at", enc(&(index as u64))?, None)
                .await?,
        )
    }

    /// [`pop_at`](ListProxy::pop_at), blocking.
    ///
    /// # Errors
    ///
    /// As [`pop_at`](ListProxy::pop_at).
    pub fn pop_at_blocking(&self, index: usize) -> Result<T, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw_blocking("pop_at", enc(&(index as u64))?)?,
        )
    }

    /// Removes the first item equal to `item` (by encoding); false when
    /// there is none (Python's `l.remove(item)`, which raises `ValueError`
    /// instead).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn remove(&self, item: &T) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw("remove", enc(item)?, None).await?)
    }

    /// [`remove`](ListProxy::remove), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn remove_blocking(&self, item: &T) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("remove", enc(item)?)?)
    }

    /// The position of the first item equal to `item` (by encoding); `None`
    /// when there is none (Python's `l.index(item)`, which raises
    /// `ValueError` instead).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn index_of(&self, item: &T) -> Result<Option<usize>, ManagerError> {
        let r = self.proxy.call_raw("index_of", enc(item)?, None).await?;
        Ok(decode::<Option<u64>>(&r)?.map(|i| i as usize))
    }

    /// [`index_of`](ListProxy::index_of), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn index_of_blocking(&self, item: &T) -> Result<Option<usize>, ManagerError> {
        let r = self.proxy.call_raw_blocking("index_of", enc(item)?)?;
        Ok(decode::<Option<u64>>(&r)?.map(|i| i as usize))
    }

    /// Whether an item equals `item` (by encoding; Python's `item in l`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn contains(&self, item: &T) -> Result<bool, ManagerError> {
        Ok(self.index_of(item).await?.is_some())
    }

    /// [`contains`](ListProxy::contains), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn contains_blocking(&self, item: &T) -> Result<bool, ManagerError> {
        Ok(self.index_of_blocking(item)?.is_some())
    }

    /// How many items equal `item` (by encoding; Python's `l.count(item)`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn count(&self, item: &T) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw("count", enc(item)?, None).await?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// [`count`](ListProxy::count), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn count_blocking(&self, item: &T) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw_blocking("count", enc(item)?)?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// Reverses the items in place (Python's `l.reverse()`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn reverse(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("reverse", enc(&())?, None).await?)
    }

    /// [`reverse`](ListProxy::reverse), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn reverse_blocking(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("reverse", enc(&())?)?)
    }

    /// Removes every item (Python's `l.clear()`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn clear(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("clear", enc(&())?, None).await?)
    }

    /// [`clear`](ListProxy::clear), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn clear_blocking(&self) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("clear", enc(&())?)?)
    }

    /// A copy of the items, in order (Python's `l[:]`).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub async fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        list(&self.proxy.call_raw("to_vec", enc(&())?, None).await?)
    }

    /// [`to_vec`](ListProxy::to_vec), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn to_vec_blocking(&self) -> Result<Vec<T>, ManagerError> {
        list(&self.proxy.call_raw_blocking("to_vec", enc(&())?)?)
    }
}

impl Manager {
    /// Creates a list on the server holding `items` (Python's
    /// `manager.list(items)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] when an item does not serialize;
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn list<T: Serialize>(&self, items: &[T]) -> Result<ListProxy<T>, ManagerError> {
        ListProxy::from_proxy(self.create(KIND, &encode_all(items)?).await?)
    }

    /// [`list`](Manager::list), blocking.
    ///
    /// # Errors
    ///
    /// As [`list`](Manager::list).
    pub fn list_blocking<T: Serialize>(&self, items: &[T]) -> Result<ListProxy<T>, ManagerError> {
        ListProxy::from_proxy(self.create_blocking(KIND, &encode_all(items)?)?)
    }
}
