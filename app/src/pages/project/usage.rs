//! Tokens and cost, per message and for the whole project, as the provider counted them.

use codeflux_protocol::TokenUsage;
use leptos::prelude::*;

use super::state::expect_ws;

/// 1234 -> "1,234"; 12345 -> "12.3k"; 1234567 -> "1.23M".
pub(super) fn tokens(n: u64) -> String {
    match n {
        0..=9_999 => {
            let s = n.to_string();
            if s.len() > 3 {
                format!("{},{}", &s[..s.len() - 3], &s[s.len() - 3..])
            } else {
                s
            }
        }
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1000.0),
        _ => format!("{:.2}M", n as f64 / 1_000_000.0),
    }
}

/// "$0.0123", "$1.20", "<$0.0001".
pub(super) fn dollars(v: f64) -> String {
    if v <= 0.0 {
        "$0".into()
    } else if v < 0.0001 {
        "<$0.0001".into()
    } else if v < 1.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// The line under an assistant message.
#[component]
pub(super) fn UsageLine(usage: Option<TokenUsage>, model: Option<String>) -> impl IntoView {
    let Some(u) = usage else {
        return model
            .map(|m| view! { <p class="mt-1 text-[11px] text-zinc-400">{m}</p> })
            .into_any();
    };
    let title = format!(
        "{} prompt tokens and {} completion tokens, as the provider counted them{}",
        u.prompt_tokens,
        u.completion_tokens,
        if u.cost_usd.is_some() {
            "; cost as the provider reported it"
        } else {
            ""
        }
    );
    view! {
        <p class="mt-1 flex flex-wrap gap-x-1.5 text-[11px] text-zinc-400 dark:text-zinc-500" title=title data-usage="true">
            <span>{format!("{} tokens", tokens(u.total()))}</span>
            <span aria-hidden="true">"·"</span>
            <span>{format!("{} prompt / {} completion", tokens(u.prompt_tokens), tokens(u.completion_tokens))}</span>
            {u.cost_usd.map(|c| view! { <span aria-hidden="true">"·"</span><span>{dollars(c)}</span> })}
            {model.map(|m| view! { <span aria-hidden="true">"·"</span><span class="truncate">{m}</span> })}
        </p>
    }
    .into_any()
}

/// The project's total in the top bar.
#[component]
pub(super) fn ProjectUsage() -> impl IntoView {
    let ws = expect_ws();
    let total = Memo::new(move |_| {
        ws.messages.with(|list| {
            let mut t: Option<TokenUsage> = None;
            for u in list.iter().filter_map(|m| m.usage) {
                t.get_or_insert_with(TokenUsage::default).add(
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cost_usd,
                );
            }
            t
        })
    });
    move || {
        total.get().map(|u| {
            let cost = u.cost_usd.map(|c| format!(" · {}", dollars(c))).unwrap_or_default();
            view! {
                <span
                    class="hidden shrink-0 text-[11px] text-zinc-500 md:inline dark:text-zinc-400"
                    title=format!("This project so far: {} prompt and {} completion tokens", u.prompt_tokens, u.completion_tokens)
                >
                    {format!("{} tokens{cost}", tokens(u.total()))}
                </span>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(tokens(120), "120");
        assert_eq!(tokens(1234), "1,234");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(2_345_678), "2.35M");
        assert_eq!(dollars(0.00123), "$0.0012");
        assert_eq!(dollars(1.5), "$1.50");
        assert_eq!(dollars(0.00001), "<$0.0001");
    }
}
