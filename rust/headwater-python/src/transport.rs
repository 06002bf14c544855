//! `HttpTransport`: headwater-http's transport for `headwater.http`'s clients.
//!
//! A request's network part (pool, TLS, writing, reading, HTTP framing) runs with the GIL
//! released, so the threads of a sync waiting on an API do not contend for it. Failures are
//! raised as `ConnectionError(kind, message)` (with a `declared` attribute: the declared
//! length of a body over the limit); `headwater.http.transport` turns them into the
//! exceptions its callers expect.

use std::time::Duration;

use headwater_http::transport::{Timeouts, Transport, TransportError, Verify};
use pyo3::exceptions::{PyConnectionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::http_error;

fn timeout(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    value
        .map(|v| {
            Duration::try_from_secs_f64(v).map_err(|_| {
                PyValueError::new_err(format!("the {what} timeout must be >= 0 seconds, got {v}"))
            })
        })
        .transpose()
}

fn kind(error: &TransportError) -> &'static str {
    match error {
        TransportError::Connect(_) => "connect",
        TransportError::ConnectTimeout(_) => "connect_timeout",
        TransportError::ReadTimeout(_) => "read_timeout",
        TransportError::WriteTimeout(_) => "write_timeout",
        TransportError::Tls(_) => "tls",
        TransportError::Protocol(_) => "protocol",
        TransportError::Request(_) => "request",
        TransportError::TotalTimeout(_) => "total_timeout",
        TransportError::TooLarge { .. } => "too_large",
    }
}

/// A connection pool with TLS, shared by the threads of a client.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct HttpTransport {
    inner: Transport,
}

/// `(status, headers, body)` of an answer.
type Answer<'py> = (u16, Vec<(String, Bound<'py, PyBytes>)>, Bound<'py, PyBytes>);

#[pymethods]
impl HttpTransport {
    /// `ca_pem`: trust the certificates of this PEM bundle (default: Mozilla's roots);
    /// `verify=False`: trust any certificate.
    #[new]
    #[pyo3(signature = (*, ca_pem=None, verify=true, max_connections=100))]
    fn new(ca_pem: Option<Vec<u8>>, verify: bool, max_connections: usize) -> PyResult<Self> {
        let verify = match (verify, ca_pem) {
            (false, _) => Verify::Disabled,
            (true, Some(pem)) => Verify::Pem(pem),
            (true, None) => Verify::WebPki,
        };
        Ok(HttpTransport {
            inner: Transport::new(verify, max_connections).map_err(http_error)?,
        })
    }

    /// Sends a request and reads the whole answer (at most `max_body` bytes of body, within
    /// `total_timeout` seconds from now), without the GIL.
    #[pyo3(signature = (method, url, headers, body, connect_timeout=None, read_timeout=None, write_timeout=None, total_timeout=None, max_body=u64::MAX))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        url: &str,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        connect_timeout: Option<f64>,
        read_timeout: Option<f64>,
        write_timeout: Option<f64>,
        total_timeout: Option<f64>,
        max_body: u64,
    ) -> PyResult<Answer<'py>> {
        let timeouts = Timeouts {
            connect: timeout(connect_timeout, "connect")?,
            read: timeout(read_timeout, "read")?,
            write: timeout(write_timeout, "write")?,
            total: timeout(total_timeout, "total")?,
        };
        let inner = &self.inner;
        let exchange = py
            .detach(|| inner.send(method, url, &headers, body, timeouts, max_body))
            .map_err(|e| {
                let error = PyConnectionError::new_err((kind(&e), e.to_string()));
                if let TransportError::TooLarge {
                    declared: Some(declared),
                    ..
                } = e
                {
                    // ConnectionError keeps only two arguments; the length rides along.
                    if let Err(failed) = error.value(py).setattr("declared", declared) {
                        return failed;
                    }
                }
                error
            })?;
        let headers = exchange
            .headers
            .into_iter()
            .map(|(name, value)| (name, PyBytes::new(py, &value)))
            .collect();
        Ok((exchange.status, headers, PyBytes::new(py, &exchange.body)))
    }
}
