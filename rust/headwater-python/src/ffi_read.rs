//! Reads of built-in Python values through borrowed references: the fast path for rows.
//!
//! pyo3's safe API takes a strong reference (an incref now, a decref later) to every key and
//! value it hands out, and dirties the cache line of every object it touches doing so. For the
//! common row — a dict of exact built-in values (`str`, `int`, `float`, `bool`, `None`,
//! `bytes`, `datetime`, `date`, and lists or tuples of those) — this module reads the values
//! in place through the CPython C API instead, and gives each to a converter ([`FastPush`])
//! that appends it to a column or declines, appending nothing. A declined value is handed back
//! as a strong reference for the general conversion, which may run Python code.
//!
//! [`read_rows`] goes further for lists of dict rows: it appends whole runs of rows with the
//! fast path only, and since nothing in it runs Python code, it can gather the next row's
//! values (borrowed) and prefetch memory for the rows after while it converts the current
//! one. The first row it cannot take whole is left to the general path.
//!
//! Two reads go below the C API, each only once a probe at first use has checked it against
//! the C API on sample objects of this interpreter (else the C API is used): the entries of
//! str-keyed dicts straight from their table ([`DictLayout`]), and the digits of a UUID's int
//! ([`UuidLayout`](layout::UuidLayout)); the probes and the layouts they find are in
//! [`layout`].
//!
//! It also tells whether a row, and the lists and dicts directly in it, have no other reference
//! than the caller's ([`row_kept_unchanged`]), which the worker's read-ahead needs.
//!
//! This is the only module of the crate with `unsafe` code. The rule that makes it sound: a
//! borrowed reference is valid as long as its owner (the rows list, a row dict, a list) is
//! neither changed nor dropped, and both can happen only if Python code runs. So an [`Inert`]
//! (the borrowed view of a value) exists only inside a call to a [`FastPush`], which is a
//! plain `fn` (it captures nothing) over a [`ColumnBuilder`] (which holds no Python objects)
//! and cannot keep the `Inert` past the call; none of `Inert`'s reads runs Python code,
//! allocates a garbage-collected object or raises; and the borrowed pointers [`read_rows`]
//! keeps from one row to the next never outlive the call, in which no Python code runs. A
//! value that needs more is turned into a strong reference before anything else happens.
//!
//! Free-threaded CPython (`Py_GIL_DISABLED`): another thread may change a dict or a list while
//! this one reads it, so there dict entries are taken as strong references (pyo3's safe API)
//! and lists always take the general path; values that cannot change (`str`, `int`, ...,
//! tuples) are still read in place while the strong reference holds them.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::NonNull;

use headwater_core::builder::ColumnBuilder;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::context::Known;

pub mod layout;

use layout::{uuid_int_bytes, DictLayout, Entries};

/// Whether the caller's `row` (an exact dict or tuple) can be read later, after more Python
/// code has run, and still hold what it holds now: nothing but the caller refers to it, nor to
/// a list or dict directly in it. Deeper values are not checked. Always false on free-threaded
/// builds, whose reference counts are split between threads.
pub fn row_kept_unchanged(row: &Bound<'_, PyAny>, known: &Known) -> bool {
    // SAFETY (both): a live object (the row, or borrowed from it), read with the GIL held.
    let only_reference = |object: *mut ffi::PyObject| unsafe { ffi::Py_REFCNT(object) == 1 };
    let mutable = |object: *mut ffi::PyObject| unsafe {
        ffi::PyList_Check(object) != 0 || ffi::PyDict_Check(object) != 0
    };
    let kept = |value: *mut ffi::PyObject| !mutable(value) || only_reference(value);
    if cfg!(Py_GIL_DISABLED) || !only_reference(row.as_ptr()) {
        return false;
    }
    if let Ok(tuple) = row.cast_exact::<PyTuple>() {
        return tuple.iter_borrowed().all(|item| kept(item.as_ptr()));
    }
    if row.cast_exact::<PyDict>().is_err() {
        return false;
    }
    // SAFETY: a live exact dict; no Python code runs while its entries are read.
    let entries = unsafe { Entries::of(row.as_ptr(), known.dict_layout) };
    let mut pos = 0;
    while let Some((_, value)) = entries.next(&mut pos) {
        if !kept(value) {
            return false;
        }
    }
    true
}

/// A converter for the fast path: appends the value to the column and returns `true`, or
/// returns `false` having appended nothing. A plain `fn` on purpose: it captures nothing, so
/// it has no way to run Python code while the borrowed value is alive.
pub type FastPush = fn(&mut ColumnBuilder, Inert<'_>) -> bool;

/// A Python value read through a borrowed reference, valid for `'a`: the span of one
/// [`FastPush`] call, during which no Python code runs. Its reads accept exact built-in types
/// only (never subclasses, whose behaviour user code may change) and otherwise say `None`.
#[derive(Clone, Copy, Debug)]
pub struct Inert<'a> {
    ptr: NonNull<ffi::PyObject>,
    known: &'a Known,
    _owner: PhantomData<&'a ffi::PyObject>,
}

/// Calendar fields of a `datetime` in UTC (naive, or aware with `datetime.timezone.utc`).
#[derive(Debug, Clone, Copy)]
pub struct UtcFields {
    /// Year, 1..=9999.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month.
    pub day: u32,
    /// Seconds into the day.
    pub seconds: i64,
    /// Microseconds into the second.
    pub micros: i64,
}

impl<'a> Inert<'a> {
    /// # Safety
    /// `ptr` must be a live object that stays alive, unchanged, for `'a` (no Python code runs).
    #[inline]
    unsafe fn new(ptr: *mut ffi::PyObject, known: &'a Known) -> Self {
        Self {
            ptr: NonNull::new(ptr).expect("a borrowed reference is never NULL"),
            known,
            _owner: PhantomData,
        }
    }

    #[inline]
    fn as_ptr(self) -> *mut ffi::PyObject {
        self.ptr.as_ptr()
    }

    #[inline]
    fn type_ptr(self) -> *mut ffi::PyTypeObject {
        // SAFETY: the object is alive for 'a (see `new`); reading its type is a field read.
        unsafe { ffi::Py_TYPE(self.as_ptr()) }
    }

    /// Whether the value is `None`.
    #[inline]
    pub fn is_none(self) -> bool {
        // SAFETY: `Py_None` is the address of a static object.
        self.as_ptr() == unsafe { ffi::Py_None() }
    }

    /// `True` or `False`.
    #[inline]
    pub fn as_bool(self) -> Option<bool> {
        // SAFETY: `Py_True` and `Py_False` are addresses of static objects.
        let (yes, no) = unsafe { (ffi::Py_True(), ffi::Py_False()) };
        match self.as_ptr() {
            p if p == yes => Some(true),
            p if p == no => Some(false),
            _ => None,
        }
    }

    /// An exact `int` that fits `i64`.
    #[inline]
    pub fn as_i64(self) -> Option<i64> {
        if self.type_ptr() != &raw mut ffi::PyLong_Type {
            return None;
        }
        let mut overflow = 0;
        // SAFETY: an exact int: the call reads its digits, and reports a value beyond i64
        // through `overflow` without raising (it raises only for objects that are not ints).
        let value = unsafe { ffi::PyLong_AsLongLongAndOverflow(self.as_ptr(), &mut overflow) };
        (overflow == 0).then_some(value)
    }

    /// An exact `float`.
    #[inline]
    pub fn as_f64(self) -> Option<f64> {
        if self.type_ptr() != &raw mut ffi::PyFloat_Type {
            return None;
        }
        // SAFETY: an exact float; this reads its value field.
        Some(unsafe { ffi::PyFloat_AS_DOUBLE(self.as_ptr()) })
    }

    /// An exact `bytes`.
    #[inline]
    pub fn as_bytes(self) -> Option<&'a [u8]> {
        if self.type_ptr() != &raw mut ffi::PyBytes_Type {
            return None;
        }
        // SAFETY: an exact bytes object holds `Py_SIZE` bytes at `PyBytes_AS_STRING`, and
        // bytes are immutable: the slice is valid while the object is, for 'a.
        unsafe {
            let len = usize::try_from(ffi::Py_SIZE(self.as_ptr())).ok()?;
            let data = ffi::PyBytes_AS_STRING(self.as_ptr()).cast::<u8>();
            Some(std::slice::from_raw_parts(data, len))
        }
    }

    /// An exact `str` as UTF-8; `None` also for a str holding lone surrogates, which have no
    /// UTF-8 form (the general path says so).
    #[inline]
    pub fn as_str(self) -> Option<&'a str> {
        if self.type_ptr() != &raw mut ffi::PyUnicode_Type {
            return None;
        }
        #[cfg(not(Py_3_14))]
        // SAFETY: an exact str. A compact ASCII str holds its `PyUnicode_GET_LENGTH` bytes of
        // ASCII (so UTF-8) inline, at `PyUnicode_DATA`, for as long as it lives. (Python 3.14
        // no longer exposes the flags; there `utf8` does the same.)
        unsafe {
            let s = self.as_ptr();
            if ffi::PyUnicode_IS_COMPACT_ASCII(s) != 0 {
                let len = usize::try_from(ffi::PyUnicode_GET_LENGTH(s)).ok()?;
                let data = std::slice::from_raw_parts(ffi::PyUnicode_DATA(s).cast::<u8>(), len);
                return Some(std::str::from_utf8_unchecked(data));
            }
        }
        self.utf8()
    }

    /// [`Inert::as_str`] for any exact str, through CPython's UTF-8 cache.
    #[inline(never)]
    fn utf8(self) -> Option<&'a str> {
        if !self.encodable() {
            return None;
        }
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: an exact, encodable str: the call returns its UTF-8 form, cached in the
        // object (for ASCII, its own data), so valid while the object is. It allocates that
        // cache with the raw allocator (never a garbage-collected object, so no collection
        // and no finaliser can run), and can fail only when out of memory.
        let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(self.as_ptr(), &mut len) };
        if data.is_null() {
            // SAFETY: the failed call set an exception, which this clears; the thread is
            // attached to the interpreter.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: CPython's UTF-8 form of a str is `len` bytes of valid UTF-8 at `data`,
        // alive as long as the str.
        Some(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), len)) })
    }

    /// Whether encoding this exact str to UTF-8 cannot fail (it holds no lone surrogate).
    /// Checked first because a failure would create an exception object, and with it possibly
    /// a garbage collection that runs arbitrary finalisers.
    fn encodable(self) -> bool {
        let s = self.as_ptr();
        // SAFETY: an exact str. Before 3.12 a str may be "not ready" (legacy API), and then
        // its kind is unknown: leave it to the general path. The kind and data pointer are
        // field reads (functions on 3.14); the data holds `PyUnicode_GET_LENGTH` code units.
        unsafe {
            #[cfg(not(Py_3_12))]
            if ffi::PyUnicode_IS_READY(s) == 0 {
                return false;
            }
            let len = usize::try_from(ffi::PyUnicode_GET_LENGTH(s)).unwrap_or(0);
            let surrogate = |c: u32| (0xD800..=0xDFFF).contains(&c);
            match ffi::PyUnicode_KIND(s) {
                ffi::PyUnicode_1BYTE_KIND => true,
                ffi::PyUnicode_2BYTE_KIND => {
                    let data = std::slice::from_raw_parts(ffi::PyUnicode_2BYTE_DATA(s), len);
                    !data.iter().any(|&c| surrogate(u32::from(c)))
                }
                ffi::PyUnicode_4BYTE_KIND => {
                    let data = std::slice::from_raw_parts(ffi::PyUnicode_4BYTE_DATA(s), len);
                    !data.iter().any(|&c| surrogate(c))
                }
                _ => false,
            }
        }
    }

    /// An exact `datetime` that is naive or has `tzinfo=datetime.timezone.utc`; any other
    /// tzinfo needs its `utcoffset()` called, which is the general path's job.
    #[inline]
    pub fn as_utc_datetime(self) -> Option<UtcFields> {
        if self.type_ptr().cast::<ffi::PyObject>() != self.known.datetime.as_ptr() {
            return None;
        }
        let d = self.as_ptr();
        // SAFETY: an exact datetime (its type is the datetime C API's own); all of these are
        // reads of its fields, and tzinfo is a borrowed pointer only compared, never used.
        unsafe {
            let tz = ffi::PyDateTime_DATE_GET_TZINFO(d);
            if tz != ffi::Py_None() && tz != self.known.utc.as_ptr() {
                return None;
            }
            Some(UtcFields {
                year: ffi::PyDateTime_GET_YEAR(d),
                month: u32::try_from(ffi::PyDateTime_GET_MONTH(d)).ok()?,
                day: u32::try_from(ffi::PyDateTime_GET_DAY(d)).ok()?,
                seconds: i64::from(ffi::PyDateTime_DATE_GET_HOUR(d)) * 3600
                    + i64::from(ffi::PyDateTime_DATE_GET_MINUTE(d)) * 60
                    + i64::from(ffi::PyDateTime_DATE_GET_SECOND(d)),
                micros: i64::from(ffi::PyDateTime_DATE_GET_MICROSECOND(d)),
            })
        }
    }

    /// An exact `date` (not a datetime) as (year, month, day).
    #[inline]
    pub fn as_date(self) -> Option<(i32, u32, u32)> {
        if self.type_ptr().cast::<ffi::PyObject>() != self.known.date.as_ptr() {
            return None;
        }
        let d = self.as_ptr();
        // SAFETY: an exact date; these read its fields.
        unsafe {
            Some((
                ffi::PyDateTime_GET_YEAR(d),
                u32::try_from(ffi::PyDateTime_GET_MONTH(d)).ok()?,
                u32::try_from(ffi::PyDateTime_GET_DAY(d)).ok()?,
            ))
        }
    }

    /// What the value is as JSON, told by one look at its type: the shape
    /// `write_json_inert` (in `values`) writes, with `Other` for anything it leaves to the
    /// general path.
    #[inline]
    pub fn json(self) -> Json<'a> {
        let ty = self.type_ptr();
        if ty == &raw mut ffi::PyUnicode_Type {
            return self.as_str().map_or(Json::Other, Json::Str);
        }
        if ty == &raw mut ffi::PyLong_Type {
            return self.as_i64().map_or(Json::Other, Json::Int);
        }
        if let Some(entries) = self.dict_entries() {
            return Json::Object(entries);
        }
        if let Some(items) = self.items() {
            return Json::Array(items);
        }
        if let Some(x) = self.as_f64() {
            return Json::Float(x);
        }
        if self.is_none() {
            return Json::Null;
        }
        self.as_bool().map_or(Json::Other, Json::Bool)
    }

    /// The 16 bytes of an exact `uuid.UUID`, read from its `int` slot (not on free-threaded
    /// builds, where another thread may replace the slot's value under the reader).
    #[inline]
    pub fn as_uuid(self) -> Option<[u8; 16]> {
        let layout = self.known.uuid_layout.as_ref()?;
        if self.type_ptr().cast::<ffi::PyObject>() != self.known.uuid.as_ptr() {
            return None;
        }
        // SAFETY: an exact UUID, whose object holds the `int` slot at `layout.offset` (checked
        // when the layout was read). The slot's value is a borrowed pointer, alive while the
        // UUID is; it is read only if it is an exact int.
        unsafe {
            let int = *self
                .as_ptr()
                .cast::<u8>()
                .offset(layout.offset)
                .cast::<*mut ffi::PyObject>();
            if int.is_null() || ffi::Py_TYPE(int) != &raw mut ffi::PyLong_Type {
                return None;
            }
            match layout.digits {
                Some(digits) => digits.value(int).map(u128::to_be_bytes),
                None => uuid_int_bytes(int),
            }
        }
    }

    /// The entries of an exact `dict` (not on free-threaded builds, where another thread may
    /// change a dict under the reader).
    #[inline]
    pub fn dict_entries(self) -> Option<DictEntries<'a>> {
        if cfg!(Py_GIL_DISABLED) || self.type_ptr() != &raw mut ffi::PyDict_Type {
            return None;
        }
        Some(DictEntries {
            // SAFETY: a live exact dict, unchanged for 'a (no Python code runs).
            entries: unsafe { Entries::of(self.as_ptr(), self.known.dict_layout) },
            known: self.known,
            pos: 0,
        })
    }

    /// The items of an exact `tuple`, or of an exact `list` (not on free-threaded builds,
    /// where another thread may change a list under the reader).
    #[inline]
    pub fn items(self) -> Option<Items<'a>> {
        let ty = self.type_ptr();
        let list = cfg!(not(Py_GIL_DISABLED)) && ty == &raw mut ffi::PyList_Type;
        if !list && ty != &raw mut ffi::PyTuple_Type {
            return None;
        }
        let seq = self.as_ptr();
        // SAFETY: an exact list or tuple; its size is a field read. It cannot change while
        // `self` is alive (no Python code runs), so it holds for the whole iteration.
        let len = unsafe {
            if list {
                ffi::PyList_GET_SIZE(seq)
            } else {
                ffi::PyTuple_GET_SIZE(seq)
            }
        };
        Some(Items {
            seq: self,
            list,
            next: 0,
            len,
        })
    }
}

/// A value as [`Inert::json`] sees it.
#[derive(Debug)]
pub enum Json<'a> {
    /// `None`.
    Null,
    /// `True` or `False`.
    Bool(bool),
    /// An exact int within i64.
    Int(i64),
    /// An exact float.
    Float(f64),
    /// An exact str.
    Str(&'a str),
    /// An exact dict's entries.
    Object(DictEntries<'a>),
    /// An exact list's or tuple's items.
    Array(Items<'a>),
    /// Anything else: subclasses, other types, ints beyond i64, strs with lone surrogates.
    Other,
}

/// Iterator over the entries of an exact dict, as [`Inert`] key and value.
#[derive(Debug)]
pub struct DictEntries<'a> {
    entries: Entries<'a>,
    known: &'a Known,
    pos: ffi::Py_ssize_t,
}

impl<'a> Iterator for DictEntries<'a> {
    type Item = (Inert<'a>, Inert<'a>);

    #[inline]
    fn next(&mut self) -> Option<(Inert<'a>, Inert<'a>)> {
        let (key, value) = self.entries.next(&mut self.pos)?;
        // SAFETY: live entries of a dict alive and unchanged for 'a (no Python code runs),
        // which keeps them alive.
        unsafe { Some((Inert::new(key, self.known), Inert::new(value, self.known))) }
    }
}

/// Iterator over the items of a list or tuple, as [`Inert`] values.
#[derive(Debug)]
pub struct Items<'a> {
    seq: Inert<'a>,
    list: bool,
    next: ffi::Py_ssize_t,
    len: ffi::Py_ssize_t,
}

impl<'a> Iterator for Items<'a> {
    type Item = Inert<'a>;

    #[inline]
    fn next(&mut self) -> Option<Inert<'a>> {
        if self.next >= self.len {
            return None;
        }
        let seq = self.seq.as_ptr();
        // SAFETY: `seq` is an exact list or tuple of `len` items, alive and unchanged for 'a
        // (no Python code runs); the index is below `len`, so the item read is one of its
        // live items, which the sequence keeps alive for 'a.
        let item = unsafe {
            if self.list {
                ffi::PyList_GET_ITEM(seq, self.next)
            } else {
                ffi::PyTuple_GET_ITEM(seq, self.next)
            }
        };
        self.next += 1;
        // SAFETY: as above.
        Some(unsafe { Inert::new(item, self.seq.known) })
    }
}

/// What looking a key up came to.
#[derive(Debug)]
pub enum Entry<'py> {
    /// The fast path appended the value.
    Pushed,
    /// The fast path declined: here is the value, for the general path.
    Slow(Bound<'py, PyAny>),
    /// The key is not in the dict.
    Absent,
}

impl<'py> Entry<'py> {
    /// Appends a borrowed value with `fast`, or takes a strong reference to it.
    ///
    /// # Safety
    /// `value` must be a live object, borrowed from a container no Python code has run
    /// against since the reference was obtained.
    #[cfg_attr(Py_GIL_DISABLED, allow(dead_code))]
    unsafe fn of_borrowed(
        py: Python<'py>,
        value: *mut ffi::PyObject,
        known: &Known,
        builder: &mut ColumnBuilder,
        fast: FastPush,
    ) -> Self {
        // SAFETY: per this function's contract, `value` is alive now; `fast` cannot run
        // Python code (see `FastPush`), so it stays alive and unchanged during the call.
        if fast(builder, unsafe { Inert::new(value, known) }) {
            Entry::Pushed
        } else {
            // SAFETY: still alive, as nothing ran since; the strong reference keeps it so.
            Entry::Slow(unsafe { Bound::from_borrowed_ptr(py, value) })
        }
    }

    /// Appends a strongly held value with `fast`, or hands it back.
    #[cfg_attr(not(Py_GIL_DISABLED), allow(dead_code))]
    fn of_owned(
        value: Bound<'py, PyAny>,
        known: &Known,
        builder: &mut ColumnBuilder,
        fast: FastPush,
    ) -> Self {
        if push_owned(&value, known, builder, fast) {
            Entry::Pushed
        } else {
            Entry::Slow(value)
        }
    }
}

/// Appends a strongly held value with `fast`.
#[cfg_attr(not(Py_GIL_DISABLED), allow(dead_code))]
fn push_owned(
    value: &Bound<'_, PyAny>,
    known: &Known,
    builder: &mut ColumnBuilder,
    fast: FastPush,
) -> bool {
    // SAFETY: `value` is held strongly across the call, and the values Inert reads in place
    // (str, int, float, bytes, datetime, tuple) are immutable; lists, which are not, are
    // never read in place on free-threaded builds (see `Inert::items`).
    fast(builder, unsafe { Inert::new(value.as_ptr(), known) })
}

/// Where a [`DictWalk::read`] stopped.
#[derive(Debug)]
pub enum Step<'py> {
    /// Every column got its value.
    Done,
    /// `fast` declined the value of column `.0`: here it is, for the general path; resume
    /// at the next column.
    Slow(usize, Bound<'py, PyAny>),
    /// The entry for column `.0` does not have the column's name as its key, or is missing.
    Mismatch(usize),
    /// The dict changed size (Python code run by the general path changed it) before column
    /// `.0` was read.
    Resized(usize),
}

/// A walk over a dict's entries in order, for rows written as dict literals in column order.
pub struct DictWalk<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    known: &'a Known,
    len: usize,
    #[cfg(not(Py_GIL_DISABLED))]
    pos: ffi::Py_ssize_t,
    #[cfg(Py_GIL_DISABLED)]
    entries: pyo3::types::dict::BoundDictIterator<'py>,
}

impl<'a, 'py> DictWalk<'a, 'py> {
    /// A walk from the first entry of `dict`.
    pub fn new(dict: &'a Bound<'py, PyDict>, known: &'a Known) -> Self {
        Self {
            dict,
            known,
            len: dict.len(),
            #[cfg(not(Py_GIL_DISABLED))]
            pos: 0,
            #[cfg(Py_GIL_DISABLED)]
            entries: dict.iter(),
        }
    }

    /// Reads the next entries into `builders[from..]` (each with its column's `plan` entry)
    /// while their keys are `names[from..]` themselves (identity: interned column names),
    /// until every column has a value or one needs the general path.
    #[inline]
    pub fn read(
        &mut self,
        names: &[Py<PyString>],
        builders: &mut [ColumnBuilder],
        from: usize,
        plan: &[FastPush],
    ) -> Step<'py> {
        // Python code runs only between calls; the size tells whether it changed the dict.
        if self.dict.len() != self.len {
            return Step::Resized(from);
        }
        let columns = names
            .iter()
            .zip(builders.iter_mut())
            .zip(plan)
            .enumerate()
            .skip(from);
        // SAFETY: `dict` is a live dict (held by the caller); its entries are read afresh
        // on every call, since the general path may have run Python code since the last.
        // `next` checks `pos` against the current table and returns borrowed references to
        // live entries; no Python code runs in this loop.
        #[cfg(not(Py_GIL_DISABLED))]
        let entries = unsafe { Entries::of(self.dict.as_ptr(), self.known.dict_layout) };
        #[cfg(not(Py_GIL_DISABLED))]
        for (i, ((name, builder), fast)) in columns {
            let v = match entries.next(&mut self.pos) {
                Some((k, v)) if k == name.as_ptr() => v,
                _ => return Step::Mismatch(i),
            };
            // SAFETY: `v` was just returned by the dict, and nothing has run since; `fast`
            // cannot run Python code (see `FastPush`).
            if !fast(builder, unsafe { Inert::new(v, self.known) }) {
                // SAFETY: still alive, as nothing ran since; the strong reference keeps it so.
                return Step::Slow(i, unsafe { Bound::from_borrowed_ptr(self.dict.py(), v) });
            }
        }
        #[cfg(Py_GIL_DISABLED)]
        for (i, ((name, builder), fast)) in columns {
            match self.entries.next() {
                Some((k, v)) if k.as_ptr() == name.as_ptr() => {
                    if !push_owned(&v, self.known, builder, *fast) {
                        return Step::Slow(i, v);
                    }
                }
                _ => return Step::Mismatch(i),
            }
        }
        Step::Done
    }
}

/// Looks `key` up in `dict` (as `dict.get_item`: no `__missing__`, no overridden
/// `__getitem__`) and appends the value to `builder` with `fast`, or hands it back. Errors
/// raised by a key's `__eq__` during the lookup pass through.
pub fn lookup<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Py<PyString>,
    known: &Known,
    builder: &mut ColumnBuilder,
    fast: FastPush,
) -> PyResult<Entry<'py>> {
    let py = dict.py();
    #[cfg(not(Py_GIL_DISABLED))]
    {
        // SAFETY: `dict` and `key` are live. The lookup may run Python code (a key's
        // `__eq__`), but only before it returns; what it returns is a borrowed reference to
        // the value in the dict as it is after that code ran, and nothing runs between here
        // and its use or incref in `of_borrowed`.
        let value = unsafe { ffi::PyDict_GetItemWithError(dict.as_ptr(), key.as_ptr()) };
        if value.is_null() {
            return match PyErr::take(py) {
                Some(err) => Err(err),
                None => Ok(Entry::Absent),
            };
        }
        // SAFETY: see above.
        Ok(unsafe { Entry::of_borrowed(py, value, known, builder, fast) })
    }
    #[cfg(Py_GIL_DISABLED)]
    {
        Ok(match dict.get_item(key.bind(py))? {
            Some(value) => Entry::of_owned(value, known, builder, fast),
            None => Entry::Absent,
        })
    }
}

/// Hints the processor to fetch the cache line at `address` ahead of its use.
#[cfg(not(Py_GIL_DISABLED))]
#[inline(always)]
fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never changes memory, whatever
    // the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above; `prfm` is a hint that never faults.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) address, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = address;
}

/// Prefetches the table of a dict: the object holding its keys and values (a few lines).
///
/// # Safety
/// `dict` must be a live object.
#[cfg(not(Py_GIL_DISABLED))]
#[inline(always)]
unsafe fn prefetch_table(dict: *mut ffi::PyObject) {
    // SAFETY: a live object; its type is a field read, and for an exact dict `ma_keys` is a
    // field of the dict object itself. The prefetches are hints (see `prefetch`).
    unsafe {
        if ffi::Py_TYPE(dict) != &raw mut ffi::PyDict_Type {
            return;
        }
        let keys = (*dict.cast::<ffi::PyDictObject>()).ma_keys.cast::<u8>();
        for line in 0..5 {
            prefetch(keys.wrapping_add(64 * line));
        }
    }
}

/// Reads the value pointers of a dict row into `values` if it is an exact dict whose keys are
/// `names` themselves, in order, prefetching each value.
///
/// # Safety
/// `dict` must be a live object, and the pointers stored are borrowed: valid only until
/// Python code next runs.
#[cfg(not(Py_GIL_DISABLED))]
unsafe fn gather(
    dict: *mut ffi::PyObject,
    names: &[Py<PyString>],
    values: &mut [*mut ffi::PyObject],
    layout: Option<DictLayout>,
) -> bool {
    // SAFETY: a live object; for an exact dict, its size (`ma_used`, what `PyDict_Size`
    // reads) is a field of the dict object, and `dict_next` only reads.
    unsafe {
        if ffi::Py_TYPE(dict) != &raw mut ffi::PyDict_Type
            || usize::try_from((*dict.cast::<ffi::PyDictObject>()).ma_used) != Ok(names.len())
        {
            return false;
        }
        let entries = Entries::of(dict, layout);
        let mut pos = 0;
        for (name, value) in names.iter().zip(values.iter_mut()) {
            match entries.next(&mut pos) {
                Some((k, v)) if k == name.as_ptr() => *value = v,
                _ => return false,
            }
            prefetch(*value);
        }
    }
    true
}

/// Appends rows `rows` of `list` (clipped to its length) with the fast paths of `plan` (one
/// per column) only, for as long as each is an exact dict with the column names as keys in
/// order and the fast paths take every value; returns how many rows it appended. The row it stops at has nothing appended.
///
/// No Python code runs in here, so the rows, their entries and values stay as they are,
/// and each row is read while the next ones are fetched from memory: the values of the next
/// row, the table of the one after, the dict of the one after that.
#[cfg(not(Py_GIL_DISABLED))]
pub fn read_rows(
    list: &Bound<'_, pyo3::types::PyList>,
    rows: std::ops::Range<usize>,
    names: &[Py<PyString>],
    known: &Known,
    builders: &mut [ColumnBuilder],
    plan: &[FastPush],
) -> usize {
    let list = list.as_ptr();
    // SAFETY: `list` is a live list (held by the caller), unchanged while this runs.
    let len = usize::try_from(unsafe { ffi::PyList_GET_SIZE(list) }).unwrap_or(0);
    let end = rows.end.min(len);
    // SAFETY: as above; callers pass indices below `len`. The item is borrowed from the list.
    let item = |i: usize| unsafe { ffi::PyList_GET_ITEM(list, i as ffi::Py_ssize_t) };
    let start_len = builders.first().map_or(0, ColumnBuilder::len);
    let width = names.len();
    // The values of two rows: the one being read and the next, alternating halves.
    let mut values = vec![std::ptr::null_mut(); 2 * width];
    // SAFETY: a live item; nothing runs between gathering and reading the pointers.
    let mut next_ok = rows.start < end
        && unsafe {
            gather(
                item(rows.start),
                names,
                &mut values[..width],
                known.dict_layout,
            )
        };
    let mut done = 0;
    for row in rows.start..end {
        if !next_ok {
            break;
        }
        let (first, second) = values.split_at_mut(width);
        let (current, next) = if (row - rows.start) % 2 == 0 {
            (first, second)
        } else {
            (second, first)
        };
        if row + 3 < len {
            prefetch(item(row + 3));
        }
        if row + 2 < len {
            // SAFETY: a live item.
            unsafe { prefetch_table(item(row + 2)) };
        }
        // SAFETY: a live item.
        next_ok = row + 1 < end && unsafe { gather(item(row + 1), names, next, known.dict_layout) };
        for ((builder, &value), fast) in builders.iter_mut().zip(&*current).zip(plan) {
            // SAFETY: gathered from a row of the list just now; no Python code has run since,
            // and `fast` cannot run any.
            if !fast(builder, unsafe { Inert::new(value, known) }) {
                for builder in builders.iter_mut() {
                    builder.truncate(start_len + done);
                }
                return done;
            }
        }
        done += 1;
    }
    done
}
