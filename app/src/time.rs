//! "Now" for relative times ("5 minutes ago"), identical on the server and during hydration.
//!
//! A page's resource fetches its data together with the time it was fetched
//! ([`Stamped`]), so the server-rendered text and the hydrated text agree. Once the page is
//! live, the [`Clock`] moves on every 30 s and the times follow.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Data together with the moment it was fetched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stamped<T> {
    pub data: T,
    pub at: DateTime<Utc>,
}

impl<T> Stamped<T> {
    pub fn now(data: T) -> Self {
        Self {
            data,
            at: current_time(),
        }
    }
}

/// The page's live clock; `None` until the page is hydrated.
#[derive(Clone, Copy)]
pub struct Clock(RwSignal<Option<DateTime<Utc>>>);

impl Clock {
    /// The present as the page shows it: the live clock, or `fallback` before hydration.
    pub fn now_or(&self, fallback: DateTime<Utc>) -> DateTime<Utc> {
        self.0.get().unwrap_or(fallback)
    }
}

pub fn provide_clock() {
    let live = RwSignal::new(None);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        live.set(Some(current_time()));
        let _ = set_interval_with_handle(
            move || live.set(Some(current_time())),
            std::time::Duration::from_secs(30),
        );
    });
    provide_context(Clock(live));
}

fn use_clock() -> Clock {
    use_context::<Clock>().unwrap_or(Clock(RwSignal::new(None)))
}

#[cfg(not(feature = "hydrate"))]
pub fn current_time() -> DateTime<Utc> {
    Utc::now()
}

#[cfg(feature = "hydrate")]
pub fn current_time() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(js_sys::Date::now() as i64).unwrap_or_default()
}

/// "5 minutes ago", kept current. `fetched` is when the page's data was fetched.
#[component]
pub fn RelativeTime(at: DateTime<Utc>, fetched: DateTime<Utc>) -> impl IntoView {
    let clock = use_clock();
    let iso = at.to_rfc3339();
    let title = at.format("%Y-%m-%d %H:%M UTC").to_string();
    view! {
        <time datetime=iso title=title>
            {move || codeflux_protocol::time::relative(at, clock.now_or(fetched))}
        </time>
    }
}
