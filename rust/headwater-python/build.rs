//! Gives this crate pyo3's configuration cfgs (`Py_GIL_DISABLED`, `Py_3_12`, ...), so code
//! that reads CPython objects directly can follow the interpreter it is built for.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
