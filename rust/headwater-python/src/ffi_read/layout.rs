//! What this interpreter's objects look like inside, probed once: where a str-keyed dict keeps
//! its entries ([`DictLayout`]) and where a `uuid.UUID` keeps its value ([`UuidLayout`]), and
//! the dict entry reader built on the first ([`Entries`]).
//!
//! It sits below [`crate::context`], which probes the layouts once per interpreter, and below
//! the readers of its parent module, which use them.

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// The entries of a dict, read from `pos` on (an entry index, as `PyDict_Next` takes it) as
/// borrowed keys and values, valid while no Python code runs.
///
/// With a [`DictLayout`], the entries of a combined table with str keys (every dict literal
/// or `dict(...)` of str keys) are read straight from the table, which costs a few loads where
/// `PyDict_Next`, a call into CPython, costs forty-odd instructions; any other dict goes
/// through `PyDict_Next`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Entries<'a> {
    /// The dict's own table of entries.
    #[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
    Table(&'a [StrEntry]),
    /// Through `PyDict_Next`.
    Api(*mut ffi::PyObject, PhantomData<&'a ()>),
}

impl Entries<'_> {
    /// # Safety
    /// `dict` must be a live exact dict, and the result must not be used once Python code
    /// has run (which may change or free the table).
    #[inline(always)]
    pub(super) unsafe fn of(dict: *mut ffi::PyObject, layout: Option<DictLayout>) -> Self {
        #[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
        if layout.is_some() {
            // SAFETY: a live exact dict; the layout was checked against this interpreter.
            if let Some(table) = unsafe { DictLayout::str_entries(dict) } {
                return Entries::Table(table);
            }
        }
        let _ = layout;
        Entries::Api(dict, PhantomData)
    }

    /// The next live entry from `*pos`, moving `pos` past it; `None` past the last.
    #[inline(always)]
    pub(super) fn next(
        self,
        pos: &mut ffi::Py_ssize_t,
    ) -> Option<(*mut ffi::PyObject, *mut ffi::PyObject)> {
        match self {
            #[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
            Entries::Table(table) => {
                while let Some(entry) = usize::try_from(*pos).ok().and_then(|i| table.get(i)) {
                    *pos += 1;
                    if !entry.key.is_null() && !entry.value.is_null() {
                        return Some((entry.key, entry.value));
                    }
                }
                None
            }
            Entries::Api(dict, _) => {
                let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
                // SAFETY: a live dict (see `of`); `PyDict_Next` checks `pos` against its
                // current table and returns borrowed references to a live entry.
                let found = unsafe { ffi::PyDict_Next(dict, pos, &mut key, &mut value) };
                (found != 0).then_some((key, value))
            }
        }
    }
}

/// Proof that this interpreter lays dicts out as CPython 3.11 to 3.14 do (without free
/// threading), so [`Entries`] may read the entries of a combined str-keyed table in place.
/// Made only by [`DictLayout::probe`], which compares such reads with `PyDict_Next` on dicts
/// of every shape it handles.
#[derive(Debug, Clone, Copy)]
pub struct DictLayout(());

/// The header of a `PyDictKeysObject` (CPython 3.11+, `Include/internal/pycore_dict.h`),
/// followed by `1 << log2_index_bytes` bytes of indices and then the entries.
#[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
#[repr(C)]
pub(super) struct KeysHeader {
    refcnt: ffi::Py_ssize_t,
    log2_size: u8,
    log2_index_bytes: u8,
    kind: u8,
    version: u32,
    usable: ffi::Py_ssize_t,
    nentries: ffi::Py_ssize_t,
}

/// An entry of a table whose keys are all str (`PyDictUnicodeEntry`): no stored hash.
#[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
#[repr(C)]
#[derive(Debug)]
pub(super) struct StrEntry {
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
}

/// `DICT_KEYS_UNICODE`: a combined table whose keys are all str.
#[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
pub(super) const DICT_KEYS_UNICODE: u8 = 1;

impl DictLayout {
    /// Checks the layout against `PyDict_Next` on dicts built here: empty, small and large (1-
    /// and 2-byte indices), with a deleted entry, with a non-str key (which must be declined) and
    /// split (an instance's `__dict__`, declined too). `None` if anything differs, and always
    /// on versions or builds this module does not know.
    pub fn probe(py: Python<'_>) -> PyResult<Option<Self>> {
        #[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
        {
            let small = PyDict::new(py);
            for i in 0..5 {
                small.set_item(format!("key{i}"), i)?;
            }
            let large = PyDict::new(py);
            for i in 0..300 {
                large.set_item(format!("key{i}"), i)?;
            }
            large.del_item("key7")?;
            small.del_item("key2")?;
            let general = PyDict::new(py);
            general.set_item("a", 1)?;
            general.set_item(1, "b")?;
            let instance = py.eval(c"type('Probe', (), {})()", None, None)?;
            instance.setattr("a", 1)?;
            instance.setattr("b", 2)?;
            let split = instance.getattr("__dict__")?.cast_into::<PyDict>()?;
            // SAFETY: live exact dicts, and no Python code runs while they are read.
            let same = |dict: &Bound<'_, PyDict>, taken: bool| unsafe {
                let entries = Self::str_entries(dict.as_ptr());
                if entries.is_some() != taken {
                    return false;
                }
                let direct_entries = Entries::of(dict.as_ptr(), Some(DictLayout(())));
                let reference_entries = Entries::of(dict.as_ptr(), None);
                let (mut a, mut b) = (0, 0);
                loop {
                    let direct = direct_entries.next(&mut a);
                    let reference = reference_entries.next(&mut b);
                    if direct != reference || a != b {
                        return false;
                    }
                    if direct.is_none() {
                        return true;
                    }
                }
            };
            let fits = same(&PyDict::new(py), true)
                && same(&small, true)
                && same(&large, true)
                && same(&general, false)
                && same(&split, false);
            return Ok(fits.then_some(DictLayout(())));
        }
        #[allow(unreachable_code)]
        {
            let _ = py;
            Ok(None)
        }
    }

    /// The entries of a combined table with str keys; `None` for any other dict.
    ///
    /// # Safety
    /// `dict` must be a live exact dict on an interpreter whose layout was probed.
    #[cfg(all(Py_3_11, not(Py_GIL_DISABLED)))]
    #[inline(always)]
    pub(super) unsafe fn str_entries<'a>(dict: *mut ffi::PyObject) -> Option<&'a [StrEntry]> {
        // SAFETY: per the contract: the dict's fields, then its keys object's header, then its
        // entries, `nentries` of them, after `1 << log2_index_bytes` bytes of indices.
        unsafe {
            let dict = dict.cast::<ffi::PyDictObject>();
            if !(*dict).ma_values.is_null() {
                return None;
            }
            let keys = (*dict).ma_keys.cast::<KeysHeader>();
            if (*keys).kind != DICT_KEYS_UNICODE {
                return None;
            }
            let len = usize::try_from((*keys).nentries).ok()?;
            if len == 0 {
                // The shared empty table has a single byte of indices, so no aligned entries.
                return Some(&[]);
            }
            let entries = keys
                .add(1)
                .cast::<u8>()
                .add(1usize << (*keys).log2_index_bytes)
                .cast::<StrEntry>();
            entries
                .is_aligned()
                .then(|| std::slice::from_raw_parts(entries, len))
        }
    }
}

/// Where `uuid.UUID` keeps its value: the `int` member of its `__slots__`, read in place by
/// [`Inert::as_uuid`](super::Inert::as_uuid).
#[derive(Debug)]
pub struct UuidLayout {
    /// Byte offset of the `int` slot in a UUID object.
    pub(super) offset: isize,
    /// How to read an int's digits in place, when the probe found this interpreter's ints
    /// laid out as CPython's; otherwise they are read through the C API.
    pub(super) digits: Option<IntDigits>,
}

/// The digits of a CPython int, as `sys.int_info` describes them: `bits` bits in each
/// `width`-byte digit, least significant first, right after the object's header; the digit
/// count and sign in the header word before them (`ob_size` up to 3.11, `lv_tag` from 3.12).
#[derive(Debug, Clone, Copy)]
pub(super) struct IntDigits {
    bits: u32,
    width: usize,
}

impl IntDigits {
    /// The value of an int in `0..2**128`; `None` for any other.
    ///
    /// # Safety
    /// `int` must be a live exact int of an interpreter whose layout was probed.
    #[inline]
    pub(super) unsafe fn value(self, int: *mut ffi::PyObject) -> Option<u128> {
        // SAFETY: per the contract: the header word, then that many digits.
        unsafe {
            let header = int.cast::<ffi::PyVarObject>();
            #[cfg(not(Py_3_12))]
            let count = usize::try_from((*header).ob_size).ok()?; // negative: a negative int
            #[cfg(Py_3_12)]
            let count = {
                let tag = (*header).ob_size as usize; // `lv_tag`: sign in bits 0-1, count above
                if tag & 3 == 2 {
                    return None;
                }
                tag >> 3
            };
            let digits = header.add(1).cast::<u8>();
            let mut value: u128 = 0;
            for i in (0..count).rev() {
                let digit = if self.width == 4 {
                    u128::from(digits.add(4 * i).cast::<u32>().read_unaligned())
                } else {
                    u128::from(digits.add(2 * i).cast::<u16>().read_unaligned())
                };
                if value.leading_zeros() < self.bits {
                    return None;
                }
                value = (value << self.bits) | digit;
            }
            Some(value)
        }
    }

    /// The digit format from `sys.int_info`, if the values it reads in place from sample ints
    /// are the C API's; `None` on free-threaded builds and layouts it does not know.
    pub(super) fn probe(py: Python<'_>) -> PyResult<Option<Self>> {
        if cfg!(Py_GIL_DISABLED) {
            return Ok(None);
        }
        let info = py.import("sys")?.getattr("int_info")?;
        let bits: u32 = info.getattr("bits_per_digit")?.extract()?;
        let width: usize = info.getattr("sizeof_digit")?.extract()?;
        if !matches!((bits, width), (30, 4) | (15, 2)) {
            return Ok(None);
        }
        let digits = Self { bits, width };
        let samples = py.eval(
            c"[0, 1, 2**15 - 1, 2**15, 2**30 - 1, 2**30, 2**64 + 5, 2**127 + 12345, \
               2**128 - 1, 2**128, 2**200, -1, -(2**100)]",
            None,
            None,
        )?;
        for sample in samples.try_iter()? {
            let sample = sample?;
            // SAFETY: live exact ints, held by the list; nothing runs while they are read.
            let (in_place, through_api) = unsafe {
                (
                    digits.value(sample.as_ptr()),
                    uuid_int_bytes(sample.as_ptr()),
                )
            };
            if in_place.map(u128::to_be_bytes) != through_api {
                return Ok(None);
            }
        }
        Ok(Some(digits))
    }
}

impl UuidLayout {
    /// Reads the layout of `uuid_type` from its `int` member descriptor; `None` if `int` is
    /// not an object slot there (another Python implementation), or on free-threaded builds.
    pub fn of(uuid_type: &Bound<'_, PyType>) -> PyResult<Option<Self>> {
        if cfg!(Py_GIL_DISABLED) {
            return Ok(None);
        }
        let py = uuid_type.py();
        let Ok(descriptor) = uuid_type.getattr("__dict__")?.get_item("int") else {
            return Ok(None);
        };
        let member_type = py.import("types")?.getattr("MemberDescriptorType")?;
        if !descriptor.get_type().is(&member_type) {
            return Ok(None);
        }
        // SAFETY: an object of type `member_descriptor` is a `PyMemberDescrObject`, whose
        // `d_member` points to the type's static `PyMemberDef` for the slot (declared as a
        // `PyGetSetDef` pointer for 3.10 by pyo3-ffi; it is a `PyMemberDef` there too).
        let (type_code, offset) = unsafe {
            let member = (*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>())
                .d_member
                .cast::<ffi::PyMemberDef>();
            ((*member).type_code, (*member).offset)
        };
        let object_size = uuid_type.getattr("__basicsize__")?.extract::<usize>()?;
        let slot = std::mem::size_of::<*mut ffi::PyObject>();
        let inside = usize::try_from(offset).is_ok_and(|offset| {
            offset >= std::mem::size_of::<ffi::PyObject>() && offset + slot <= object_size
        });
        if type_code != ffi::Py_T_OBJECT_EX || !inside {
            return Ok(None);
        }
        Ok(Some(Self {
            offset,
            digits: IntDigits::probe(py)?,
        }))
    }
}

/// The 16 big-endian bytes of an exact int in `0..2**128` (a UUID's value); `None` for any
/// other int, which `object.__setattr__` can put in a UUID. Raises nothing, runs no Python code.
///
/// # Safety
/// `int` must be a live exact int.
#[cfg(not(Py_3_13))]
pub(super) unsafe fn uuid_int_bytes(int: *mut ffi::PyObject) -> Option<[u8; 16]> {
    extern "C" {
        // Exported by CPython 3.10 to 3.12 (`Include/cpython/longobject.h`); neither raises.
        fn _PyLong_Sign(v: *mut ffi::PyObject) -> std::ffi::c_int;
        fn _PyLong_NumBits(v: *mut ffi::PyObject) -> usize;
    }
    let mut bytes = [0u8; 16];
    // SAFETY: an exact int (the caller's contract). In 0..2**128 the conversion to 16
    // unsigned bytes cannot fail, so it raises nothing.
    unsafe {
        if _PyLong_Sign(int) < 0 || _PyLong_NumBits(int) > 128 {
            return None;
        }
        (ffi::_PyLong_AsByteArray(int.cast(), bytes.as_mut_ptr(), 16, 0, 0) == 0).then_some(bytes)
    }
}

/// See the version for CPython before 3.13.
///
/// # Safety
/// `int` must be a live exact int.
#[cfg(Py_3_13)]
pub(super) unsafe fn uuid_int_bytes(int: *mut ffi::PyObject) -> Option<[u8; 16]> {
    // Two's complement in 17 bytes: a value in 0..2**128 fits with a zero first byte. A
    // value that does not fit is reported by the size returned, never by raising.
    let mut signed = [0u8; 17];
    // SAFETY: an exact int (the caller's contract) and a 17-byte buffer.
    let needed = unsafe {
        ffi::PyLong_AsNativeBytes(
            int,
            signed.as_mut_ptr().cast(),
            17,
            ffi::Py_ASNATIVEBYTES_BIG_ENDIAN,
        )
    };
    if !(0..=17).contains(&needed) || signed[0] != 0 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&signed[1..]);
    Some(bytes)
}
