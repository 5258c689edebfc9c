//! How a log line is written, and the request context that lines logged while the front door
//! serves a request carry (client address, app id, `aa-request-id`).
//!
//! Owns the line format of every log line (text or JSON, chosen once by `main`); owns no log
//! levels (`config`) and no access-log fields (`frontdoor::access_log`). A leaf: imports nothing
//! else from harp.
//!
//! Why a task-local context and not a per-request tracing span: `tracing_subscriber`'s `fmt`
//! layer formats a span's fields when the span is created and again when one is recorded,
//! whether or not anything is ever logged inside it, and registers, enters and exits the span
//! on every poll. On the USER route that was 5.5k of 34k user-space instructions per request
//! (callgrind, issue #14). The context here costs a thread-local swap per poll and is formatted
//! only into the lines actually written. Connections keep their span (`net::accept`): it is
//! created once per connection, not once per request.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::net::IpAddr;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[cfg(test)]
pub(crate) mod capture;

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// What every line logged while one request is served says about it.
pub(crate) struct RequestContext {
    client: IpAddr,
    request_id: Option<Box<str>>,
    /// Filled in once the pipeline has named the app (empty before, and for refusals that name
    /// none).
    app: RefCell<String>,
}

impl RequestContext {
    /// `request_id` must already be checked as short printable text: it is written as sent.
    pub(crate) fn new(client: IpAddr, request_id: Option<&str>) -> RequestContext {
        RequestContext {
            client,
            request_id: request_id.map(Box::from),
            app: RefCell::new(String::new()),
        }
    }

    /// ` request{client=… app="…" request_id="…"}`: the words the request span used to print,
    /// so lines stay greppable the same way.
    fn write_text(&self, out: &mut String) {
        let _ = write!(out, " request{{client={}", self.client);
        let app = self.app.borrow();
        if !app.is_empty() {
            let _ = write!(out, " app={:?}", app.as_str());
        }
        if let Some(id) = &self.request_id {
            let _ = write!(out, " request_id={:?}", &**id);
        }
        out.push('}');
    }

    /// `"request":{"client":"…","app":"…","request_id":"…"}`, every value JSON-escaped.
    fn write_json(&self, out: &mut String) {
        let client = self.client.to_string();
        let mut object = serde_json::Map::new();
        object.insert("client".into(), client.into());
        let app = self.app.borrow();
        if !app.is_empty() {
            object.insert("app".into(), app.as_str().into());
        }
        if let Some(id) = &self.request_id {
            object.insert("request_id".into(), (**id).into());
        }
        let _ = write!(out, "\"request\":{}", serde_json::Value::Object(object));
    }
}

/// Runs `work` with `context` as the request context of every line it logs (on this task:
/// tasks it spawns do not inherit it).
pub(crate) fn in_request<F: Future>(
    context: RequestContext,
    work: F,
) -> impl Future<Output = F::Output> {
    // Not an `async fn`: that would move `work` (a large state machine) once more per request.
    REQUEST.scope(context, work)
}

/// Names the app of the request being served (no-op outside one).
pub(crate) fn set_app(app: &str) {
    let _ = REQUEST.try_with(|c| {
        let mut slot = c.app.borrow_mut();
        slot.clear();
        slot.push_str(app);
    });
}

/// A line format (`tracing_subscriber`'s text or JSON `Format`) that appends the request
/// context to lines logged while a request is served; other lines are written by `inner` as
/// they are.
pub struct Lines<E> {
    inner: E,
    json: bool,
}

impl<E> Lines<E> {
    /// Around a text format: the context goes at the end of the line.
    pub fn text(inner: E) -> Lines<E> {
        Lines { inner, json: false }
    }

    /// Around a JSON format: the context is one more member, `request`, of the line's object.
    pub fn json(inner: E) -> Lines<E> {
        Lines { inner, json: true }
    }
}

impl<S, N, E> FormatEvent<S, N> for Lines<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut context = String::new();
        let in_request = REQUEST
            .try_with(|c| {
                if self.json {
                    c.write_json(&mut context)
                } else {
                    c.write_text(&mut context)
                }
            })
            .is_ok();
        if !in_request {
            return self.inner.format_event(ctx, writer, event);
        }
        // The inner format ends the line itself; it is written to a buffer so the context can
        // go before the line's end. (`Writer::new` drops the writer's colour setting: text
        // formats that want colours set them on the `Format`, as `main` does.)
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        if self.json {
            match body.strip_suffix('}') {
                Some(open) => writeln!(writer, "{open},{context}}}"),
                // Not an object after all: leave the line alone.
                None => writeln!(writer, "{body}"),
            }
        } else {
            writeln!(writer, "{body}{context}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::Captured;
    use super::*;

    /// Logs one warning inside a request (app named after the decision) and one outside;
    /// returns the two lines, in the text format of `Captured` or in JSON.
    async fn two_lines(json: bool, request_id: Option<&str>) -> (String, String) {
        let (captured, _guard) = if json {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .json()
                .event_format(Lines::json(tracing_subscriber::fmt::format().json()))
                .finish();
            (captured, tracing::subscriber::set_default(subscriber))
        } else {
            Captured::start()
        };
        let context = RequestContext::new("192.0.2.7".parse().unwrap(), request_id);
        in_request(context, async {
            set_app("notes");
            tracing::warn!(step = 2, "inside");
        })
        .await;
        tracing::warn!("outside");
        let text = captured.text();
        let mut lines = text.lines().map(str::to_owned);
        (lines.next().unwrap(), lines.next().unwrap())
    }

    #[tokio::test]
    async fn text_lines_inside_a_request_end_with_its_context() {
        let (inside, outside) = two_lines(false, Some("req-9")).await;
        assert!(inside.contains("WARN"), "{inside}");
        assert!(inside.contains("inside step=2"), "{inside}");
        assert!(
            inside.ends_with(r#" request{client=192.0.2.7 app="notes" request_id="req-9"}"#),
            "{inside}"
        );
        assert!(outside.ends_with("outside"), "{outside}");
        assert!(!outside.contains("request{"), "{outside}");
    }

    #[tokio::test]
    async fn json_lines_inside_a_request_carry_it_as_a_member() {
        // A quote and a backslash are printable: the id must still leave valid JSON.
        let (inside, outside) = two_lines(true, Some(r#"a"b\c"#)).await;
        let inside: serde_json::Value = serde_json::from_str(&inside).expect("valid JSON");
        assert_eq!(inside["fields"]["message"], "inside");
        assert_eq!(inside["request"]["client"], "192.0.2.7");
        assert_eq!(inside["request"]["app"], "notes");
        assert_eq!(inside["request"]["request_id"], r#"a"b\c"#);
        let outside: serde_json::Value = serde_json::from_str(&outside).expect("valid JSON");
        assert_eq!(outside["fields"]["message"], "outside");
        assert!(outside.get("request").is_none(), "{outside}");
    }

    #[tokio::test]
    async fn a_request_without_an_id_or_app_prints_only_its_client() {
        let (captured, _guard) = Captured::start();
        let context = RequestContext::new("2001:db8::1".parse().unwrap(), None);
        in_request(context, async { tracing::warn!("refused") }).await;
        let text = captured.text();
        assert!(
            text.trim_end()
                .ends_with("refused request{client=2001:db8::1}"),
            "{text}"
        );
    }
}
