//! `ValueProxy` and `ArrayProxy`: a single value and a fixed-length array
//! served by the manager (Python's `manager.Value()` and `manager.Array()`).

use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{at, decode, enc, encode_all, items as list, out_of_range};
use crate::manager::proxy::typed_proxy;
use crate::manager::served::lock;
use crate::manager::{
    Call, CallError, Manager, ManagerError, Proxy, Registry, RemoteError, Served,
};

const VALUE: &str = "aiop.Value";
const ARRAY: &str = "aiop.Array";

pub(super) fn register(r: &mut Registry) {
    r.register(VALUE, |value: Vec<u8>| {
        Ok(Value {
            value: Mutex::new(value),
        })
    });
    r.register(ARRAY, |items: Vec<Vec<u8>>| {
        Ok(Array {
            items: Mutex::new(items),
        })
    });
}

/// The served value, encoded.
struct Value {
    value: Mutex<Vec<u8>>,
}

impl Served for Value {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut v = lock(&self.value);
        match call.method() {
            // The value's own encoding is the reply of `get` and `swap`.
            "get" => Ok(v.clone()),
            "set" => {
                *v = call.raw_args().to_vec();
                call.reply(&())
            }
            "swap" => Ok(std::mem::replace(&mut *v, call.raw_args().to_vec())),
            "compare_exchange" => {
                let (current, new): (Vec<u8>, Vec<u8>) = call.args()?;
                if *v == current {
                    let reply = call.reply(&Ok::<&Vec<u8>, &Vec<u8>>(&new));
                    *v = new;
                    reply
                } else {
                    call.reply(&Err::<&Vec<u8>, &Vec<u8>>(&*v))
                }
            }
            _ => Err(call.no_such_method()),
        }
    }
}

/// The served array: encoded items, of a length fixed at creation.
struct Array {
    items: Mutex<Vec<Vec<u8>>>,
}

impl Served for Array {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut a = lock(&self.items);
        match call.method() {
            "len" => call.reply(&(a.len() as u64)),
            "get" => {
                let index: u64 = call.args()?;
                match usize::try_from(index).ok().and_then(|i| a.get(i)) {
                    // The item's own encoding is the reply.
                    Some(item) => Ok(item.clone()),
                    None => Err(out_of_range(index, a.len(), "an array")),
                }
            }
            "set" => {
                let (index, item): (u64, Vec<u8>) = call.args()?;
                let len = a.len();
                match usize::try_from(index).ok().and_then(|i| a.get_mut(i)) {
                    Some(slot) => *slot = item,
                    None => return Err(out_of_range(index, len, "an array")),
                }
                call.reply(&())
            }
            "to_vec" => call.reply(&*a),
            "set_all" => {
                let items: Vec<Vec<u8>> = call.args()?;
                if items.len() != a.len() {
                    return Err(RemoteError::new(
                        RemoteError::INVALID_VALUE,
                        format!(
                            "{} items given for an array of length {}",
                            items.len(),
                            a.len()
                        ),
                    )
                    .into());
                }
                *a = items;
                call.reply(&())
            }
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to a single value served by a manager: Python's
/// `manager.Value(typecode, value)` (`ValueProxy`).
///
/// The value is any serde type `T`, not only a C number. Each method is one
/// round trip to the server, atomic there: [`swap`](ValueProxy::swap) and
/// [`compare_exchange`](ValueProxy::compare_exchange) read and write in one
/// step, so a counter needs no lock (Python has no such methods; it takes a
/// lock around `v.value += 1`).
///
/// | Python | `ValueProxy` |
/// |---|---|
/// | `v.value`, `v.value = x` | [`get`](ValueProxy::get), [`set`](ValueProxy::set) |
/// | (with a lock held) `old = v.value; v.value = x` | [`swap`](ValueProxy::swap) |
/// | (with a lock held) `if v.value == a: v.value = b` | [`compare_exchange`](ValueProxy::compare_exchange) |
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let v = manager.value_blocking(&0u64)?;
/// let mut seen = v.get_blocking()?;
/// while let Err(actual) = v.compare_exchange_blocking(&seen, &(seen + 1))? {
///     seen = actual;
/// }
/// # Ok(()) }
/// ```
pub struct ValueProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

typed_proxy!(ValueProxy<T>, VALUE);

fn exchanged<T: DeserializeOwned>(bytes: &[u8]) -> Result<Result<T, T>, ManagerError> {
    Ok(match decode::<Result<Vec<u8>, Vec<u8>>>(bytes)? {
        Ok(new) => Ok(decode(&new)?),
        Err(actual) => Err(decode(&actual)?),
    })
}

fn exchange_args<T: Serialize>(current: &T, new: &T) -> Result<Vec<u8>, ManagerError> {
    enc(&(enc(current)?, enc(new)?))
}

impl<T> ValueProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    /// The value (Python's `v.value`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`]. The same for every method here.
    pub async fn get(&self) -> Result<T, ManagerError> {
        decode(&self.proxy.call_raw("get", enc(&())?, None).await?)
    }

    /// [`get`](ValueProxy::get), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub fn get_blocking(&self) -> Result<T, ManagerError> {
        decode(&self.proxy.call_raw_blocking("get", enc(&())?)?)
    }

    /// Sets the value (Python's `v.value = value`).
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub async fn set(&self, value: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("set", enc(value)?, None).await?)
    }

    /// [`set`](ValueProxy::set), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub fn set_blocking(&self, value: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("set", enc(value)?)?)
    }

    /// Sets the value and returns the one it replaces, in one step.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub async fn swap(&self, value: &T) -> Result<T, ManagerError> {
        decode(&self.proxy.call_raw("swap", enc(value)?, None).await?)
    }

    /// [`swap`](ValueProxy::swap), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub fn swap_blocking(&self, value: &T) -> Result<T, ManagerError> {
        decode(&self.proxy.call_raw_blocking("swap", enc(value)?)?)
    }

    /// Sets the value to `new` if it equals `current` (by encoding), in one
    /// step: `Ok(new)` when it did, `Err(actual)` with the value found when
    /// it did not (then nothing changed).
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub async fn compare_exchange(
        &self,
        current: &T,
        new: &T,
    ) -> Result<Result<T, T>, ManagerError> {
        let args = exchange_args(current, new)?;
        exchanged(&self.proxy.call_raw("compare_exchange", args, None).await?)
    }

    /// [`compare_exchange`](ValueProxy::compare_exchange), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub fn compare_exchange_blocking(
        &self,
        current: &T,
        new: &T,
    ) -> Result<Result<T, T>, ManagerError> {
        let args = exchange_args(current, new)?;
        exchanged(&self.proxy.call_raw_blocking("compare_exchange", args)?)
    }
}

/// A proxy to a fixed-length array served by a manager: Python's
/// `manager.Array(typecode, sequence)` (`ArrayProxy`).
///
/// Items are any serde type `T`, not only C numbers. The length is fixed
/// when the array is made. Each method is one round trip to the server,
/// atomic there.
///
/// | Python | `ArrayProxy` |
/// |---|---|
/// | `len(a)`, `a[i]`, `a[i] = x` | [`len`](ArrayProxy::len), [`get`](ArrayProxy::get), [`set`](ArrayProxy::set) |
/// | `a[:]`, `a[:] = items` | [`to_vec`](ArrayProxy::to_vec), [`set_all`](ArrayProxy::set_all) |
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let a = manager.array_blocking(&[0.0f64; 4])?;
/// a.set_blocking(2, &1.5)?;
/// assert_eq!(a.to_vec_blocking()?, [0.0, 0.0, 1.5, 0.0]);
/// # Ok(()) }
/// ```
pub struct ArrayProxy<T> {
    proxy: Proxy,
    _types: PhantomData<fn() -> T>,
}

typed_proxy!(ArrayProxy<T>, ARRAY);

impl<T> ArrayProxy<T>
where
    T: Serialize + DeserializeOwned,
{
    /// The number of items, fixed at creation (Python's `len(a)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`]. The same for every method here.
    pub async fn len(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw("len", enc(&())?, None).await?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// [`len`](ArrayProxy::len), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ArrayProxy::len).
    pub fn len_blocking(&self) -> Result<usize, ManagerError> {
        let r = self.proxy.call_raw_blocking("len", enc(&())?)?;
        Ok(decode::<u64>(&r)? as usize)
    }

    /// Whether the array has no items.
    ///
    /// # Errors
    ///
    /// As [`len`](ArrayProxy::len).
    pub async fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len().await? == 0)
    }

    /// [`is_empty`](ArrayProxy::is_empty), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ArrayProxy::len).
    pub fn is_empty_blocking(&self) -> Result<bool, ManagerError> {
        Ok(self.len_blocking()? == 0)
    }

    /// The item at `index` (Python's `a[i]`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::OUT_OF_RANGE`] when `index` is not below the length;
    /// as [`len`](ArrayProxy::len).
    pub async fn get(&self, index: usize) -> Result<T, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("get", enc(&(index as u64))?, None)
                .await?,
        )
    }

    /// [`get`](ArrayProxy::get), blocking.
    ///
    /// # Errors
    ///
    /// As [`get`](ArrayProxy::get).
    pub fn get_blocking(&self, index: usize) -> Result<T, ManagerError> {
        decode(&self.proxy.call_raw_blocking("get", enc(&(index as u64))?)?)
    }

    /// Replaces the item at `index` with `item` (Python's `a[i] = item`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::OUT_OF_RANGE`] when `index` is not below the length
    /// (nothing changes); as [`len`](ArrayProxy::len).
    pub async fn set(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw("set", at(index, item)?, None).await?)
    }

    /// [`set`](ArrayProxy::set), blocking.
    ///
    /// # Errors
    ///
    /// As [`set`](ArrayProxy::set).
    pub fn set_blocking(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("set", at(index, item)?)?)
    }

    /// A copy of the items, in order (Python's `a[:]`).
    ///
    /// # Errors
    ///
    /// As [`len`](ArrayProxy::len).
    pub async fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        list(&self.proxy.call_raw("to_vec", enc(&())?, None).await?)
    }

    /// [`to_vec`](ArrayProxy::to_vec), blocking.
    ///
    /// # Errors
    ///
    /// As [`len`](ArrayProxy::len).
    pub fn to_vec_blocking(&self) -> Result<Vec<T>, ManagerError> {
        list(&self.proxy.call_raw_blocking("to_vec", enc(&())?)?)
    }

    /// Replaces every item, in one step (Python's `a[:] = items`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when `items` is not as long as the
    /// array (nothing changes); as [`len`](ArrayProxy::len).
    pub async fn set_all(&self, items: &[T]) -> Result<(), ManagerError> {
        let items = enc(&encode_all(items)?)?;
        decode(&self.proxy.call_raw("set_all", items, None).await?)
    }

    /// [`set_all`](ArrayProxy::set_all), blocking.
    ///
    /// # Errors
    ///
    /// As [`set_all`](ArrayProxy::set_all).
    pub fn set_all_blocking(&self, items: &[T]) -> Result<(), ManagerError> {
        let items = enc(&encode_all(items)?)?;
        decode(&self.proxy.call_raw_blocking("set_all", items)?)
    }
}

impl Manager {
    /// Creates a value on the server holding `value` (Python's
    /// `manager.Value(typecode, value)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] when `value` does not serialize;
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn value<T: Serialize>(&self, value: &T) -> Result<ValueProxy<T>, ManagerError> {
        ValueProxy::from_proxy(self.create(VALUE, &enc(value)?).await?)
    }

    /// [`value`](Manager::value), blocking.
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn value_blocking<T: Serialize>(&self, value: &T) -> Result<ValueProxy<T>, ManagerError> {
        ValueProxy::from_proxy(self.create_blocking(VALUE, &enc(value)?)?)
    }

    /// Creates an array on the server holding `items`, of their number for
    /// good (Python's `manager.Array(typecode, items)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] when an item does not serialize;
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn array<T: Serialize>(&self, items: &[T]) -> Result<ArrayProxy<T>, ManagerError> {
        ArrayProxy::from_proxy(self.create(ARRAY, &encode_all(items)?).await?)
    }

    /// [`array`](Manager::array), blocking.
    ///
    /// # Errors
    ///
    /// As [`array`](Manager::array).
    pub fn array_blocking<T: Serialize>(&self, items: &[T]) -> Result<ArrayProxy<T>, ManagerError> {
        ArrayProxy::from_proxy(self.create_blocking(ARRAY, &encode_all(items)?)?)
    }
}
