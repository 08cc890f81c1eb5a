//! `baton status` and `baton release --force`.
//!
//! A holder's fingerprint is whatever is stored in the lock key (another
//! library or an attacker may have put escape sequences there): it is
//! printed through `baton_cli::text`, like every name shown.

use baton_cli::text::{json_string, printable};

use crate::cli::{ReleaseArgs, StatusArgs};
use crate::exit::{self, Exit};

/// Runs `baton status`: exit 0 if free, 1 if held.
pub async fn status(args: StatusArgs) -> Exit {
    let client = match crate::connect(&args.backend).await {
        Ok(client) => client,
        Err(e) => return exit::from_error(&e),
    };
    let status = match client.status(&args.name).await {
        Ok(status) => status,
        Err(e) => return exit::from_error(&e),
    };
    let fence = status.fence.map(|f| f.0);
    if args.json {
        let holder = status.holder.as_ref();
        baton_cli::out!(
            "{{\"name\":{},\"held\":{},\"holder\":{},\"remaining_ms\":{},\"answered_by\":[{}],\"fence\":{}}}",
            json_string(&args.name),
            holder.is_some(),
            holder.map_or("null".to_owned(), |h| json_string(&h.fingerprint)),
            holder
                .and_then(|h| h.remaining)
                .map_or("null".to_owned(), |r| r.as_millis().to_string()),
            status
                .answered_by
                .iter()
                .map(|n| json_string(n))
                .collect::<Vec<_>>()
                .join(","),
            fence.map_or("null".to_owned(), |f| f.to_string()),
        );
    } else {
        let fence = fence.map_or("never taken".to_owned(), |f| format!("fence {f}"));
        let servers = printable(&status.answered_by.join(", ")).into_owned();
        match &status.holder {
            None => baton_cli::out!("{}: free ({fence}) on {servers}", printable(&args.name)),
            Some(holder) => {
                let left = holder.remaining.map_or("no expiry".to_owned(), |r| {
                    format!(
                        "{} left",
                        humantime::format_duration(std::time::Duration::from_millis(
                            r.as_millis() as u64
                        ))
                    )
                });
                baton_cli::out!(
                    "{}: held by {} ({left}, {fence}) on {servers}",
                    printable(&args.name),
                    printable(&holder.fingerprint)
                );
            }
        }
    }
    Exit::quiet(u8::from(status.holder.is_some()))
}

/// Runs `baton release`: refuses without --force.
pub async fn release(args: ReleaseArgs) -> Exit {
    if !args.force {
        return Exit::with(
            exit::USAGE,
            format!(
                "refusing to break lock {:?} without --force (it removes the lock whoever holds it)",
                args.name
            ),
        );
    }
    let client = match crate::connect(&args.backend).await {
        Ok(client) => client,
        Err(e) => return exit::from_error(&e),
    };
    match client.force_release(&args.name).await {
        Ok(removed) if removed.is_empty() => {
            baton_cli::out!("{}: was not held; nothing removed", printable(&args.name));
            Exit::quiet(0)
        }
        Ok(removed) => {
            baton_cli::out!(
                "{}: removed the lock held by {}",
                printable(&args.name),
                printable(&removed.join(", "))
            );
            Exit::quiet(0)
        }
        Err(e) => exit::from_error(&e),
    }
}
