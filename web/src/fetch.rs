//! Downloading a model with progress reports and cancellation.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, RequestInit, Response};

use crate::error::{describe, js_error, Kind};

#[wasm_bindgen]
extern "C" {
    // The global `fetch`, present both in windows and in workers.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(input: &str, init: &RequestInit) -> Promise;
}

/// Model files are tens of megabytes; by default a download of more than this is refused (`maxBytes` of
/// `Model.fromUrl` sets another maximum).
pub const MAX_DOWNLOAD_BYTES: u64 = 2 << 30;

/// What is reserved before the first byte arrives, at most: a server's `Content-Length` is a claim, not bytes,
/// so the buffer grows with the data that really comes.
const INITIAL_RESERVATION: u64 = 1 << 20;

/// Downloads `url`, calling `on_progress(loaded, total)` as chunks arrive (`total` is `undefined` when the
/// server does not say). Rejects with `kind: "fetch"` on network, CORS and HTTP failures and on a body of
/// more than `max_bytes` (claimed or received), and with `kind: "abort"` when `signal` aborts.
pub async fn download(
    url: &str,
    on_progress: Option<&Function>,
    signal: Option<&AbortSignal>,
    max_bytes: u64,
) -> Result<Vec<u8>, JsValue> {
    let aborted = |signal: Option<&AbortSignal>| signal.is_some_and(AbortSignal::aborted);
    let init = RequestInit::new();
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    let response = JsFuture::from(global_fetch(url, &init))
        .await
        .map_err(|e| {
            if aborted(signal) {
                js_error(Kind::Abort, format!("the download of {url} was aborted"))
            } else {
                js_error(
                    Kind::Fetch,
                    format!(
                        "could not fetch {url}: {} (the server is unreachable, the address is wrong, or it does \
                         not allow cross-origin requests (CORS))",
                        describe(&e)
                    ),
                )
            }
        })?;
    let response: Response = response
        .dyn_into()
        .map_err(|_| js_error(Kind::Fetch, format!("fetch({url}) did not give a Response")))?;
    if !response.ok() {
        return Err(js_error(
            Kind::Fetch,
            format!(
                "could not fetch {url}: HTTP {} {}",
                response.status(),
                response.status_text()
            ),
        ));
    }
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(total) = total.filter(|&t| t > max_bytes) {
        return Err(js_error(
            Kind::Fetch,
            format!("{url} is {total} bytes, more than the {max_bytes} bytes allowed (maxBytes)"),
        ));
    }
    let report = |loaded: u64| {
        if let Some(callback) = on_progress {
            let total = total.map_or(JsValue::UNDEFINED, |t| JsValue::from_f64(t as f64));
            // A throwing progress callback must not break the download.
            let _ = callback.call2(&JsValue::NULL, &JsValue::from_f64(loaded as f64), &total);
        }
    };
    let Some(body) = response.body() else {
        report(0);
        return Ok(Vec::new());
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let capacity = total.unwrap_or(0).min(INITIAL_RESERVATION) as usize;
    let mut bytes: Vec<u8> = Vec::with_capacity(capacity);
    report(0);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| {
            if aborted(signal) {
                js_error(Kind::Abort, format!("the download of {url} was aborted"))
            } else {
                js_error(
                    Kind::Fetch,
                    format!("the download of {url} failed: {}", describe(&e)),
                )
            }
        })?;
        let done = Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            break;
        }
        let value = Reflect::get(&chunk, &"value".into())
            .map_err(|e| js_error(Kind::Fetch, describe(&e)))?;
        let value: Uint8Array = value
            .dyn_into()
            .map_err(|_| js_error(Kind::Fetch, "the response body is not bytes"))?;
        if (bytes.len() as u64).saturating_add(u64::from(value.length())) > max_bytes {
            let _ = reader.cancel();
            return Err(js_error(
                Kind::Fetch,
                format!("{url} is larger than the {max_bytes} bytes allowed (maxBytes)"),
            ));
        }
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        report(bytes.len() as u64);
    }
    Ok(bytes)
}
