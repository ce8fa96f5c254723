//! `corralctl status NAME…`: every property of each named service, like `systemctl
//! status`, or as JSON.

use std::process::ExitCode;

use serde_json::json;

use super::commands::Context;
use super::commands::{manager, on_service};
use super::output::{paint_as, paint_state};
use crate::client::{BusResult, ServiceProxy};

pub(super) async fn status(cx: &Context, names: &[String]) -> BusResult<ExitCode> {
    let m = manager(cx).await?;
    let mut all_active = true;
    let mut documents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let details = on_service(&m, name, |s| async move { Details::read(&s).await }).await?;
        all_active &= details.active == "active";
        if cx.json {
            documents.push(details.to_json(name));
        } else {
            if i > 0 {
                println!();
            }
            print!("{}", details.render(name, cx.color));
        }
    }
    if cx.json {
        println!("{}", serde_json::Value::Array(documents));
    }
    Ok(if all_active {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Every property of one service.
struct Details {
    description: String,
    group: String,
    served: bool,
    active: String,
    sub: String,
    pid: u32,
    since: u64,
    restarts: u32,
    exit_status: i32,
    status_text: String,
    last_error: String,
    online: bool,
    desired: String,
    desired_since: u64,
    methods: Vec<String>,
    recipes: Vec<String>,
    control_group: String,
    unenforced: Vec<String>,
    health: String,
    last_health_check: u64,
    result: String,
}

impl Details {
    async fn read(s: &ServiceProxy<'_>) -> BusResult<Details> {
        Ok(Details {
            description: s.description().await?,
            group: s.group().await?,
            served: s.served().await?,
            active: s.active_state().await?,
            sub: s.sub_state().await?,
            pid: s.main_pid().await?,
            since: s.state_change_timestamp().await?,
            restarts: s.n_restarts().await?,
            exit_status: s.exec_main_status().await?,
            status_text: s.status_text().await?,
            last_error: s.last_error().await?,
            online: s.online().await?,
            desired: s.desired_state().await?,
            desired_since: s.desired_state_timestamp().await?,
            methods: s.methods().await?,
            recipes: s.recipes().await?,
            control_group: s.control_group().await?,
            health: s.health().await?,
            last_health_check: s.last_health_check().await?,
            result: s.result().await?,
            unenforced: s.unenforced_limits().await?,
        })
    }

    fn to_json(&self, name: &str) -> serde_json::Value {
        json!({
            "name": name, "description": self.description, "group": self.group, "served": self.served,
            "active_state": self.active, "sub_state": self.sub, "main_pid": self.pid,
            "state_change_timestamp": self.since, "n_restarts": self.restarts,
            "exec_main_status": self.exit_status, "status_text": self.status_text,
            "last_error": self.last_error, "online": self.online,
            "desired_state": self.desired, "desired_state_timestamp": self.desired_since,
            "methods": self.methods, "recipes": self.recipes,
            "control_group": self.control_group, "unenforced_limits": self.unenforced,
            "health": self.health, "last_health_check": self.last_health_check,
            "result": self.result,
        })
    }

    fn render(&self, name: &str, color: bool) -> String {
        let mut out = String::new();
        let dot = paint_as("●", &self.active, color);
        let title = if self.description.is_empty() {
            name.to_owned()
        } else {
            format!("{name} - {}", self.description)
        };
        out.push_str(&format!("{dot} {title}\n"));
        let group = if self.group.is_empty() {
            "-".to_owned()
        } else {
            self.group.clone()
        };
        let served = if self.served {
            "served here"
        } else {
            "served by another peer"
        };
        out.push_str(&format!("     Group: {group} ({served})\n"));
        out.push_str(&format!(
            "    Active: {} ({}) since {}\n",
            paint_state(&self.active, color),
            self.sub,
            format_timestamp(self.since)
        ));
        if self.pid != 0 {
            out.push_str(&format!("  Main PID: {}\n", self.pid));
        }
        if !self.control_group.is_empty() {
            out.push_str(&format!("    CGroup: {}\n", self.control_group));
        }
        for limit in &self.unenforced {
            out.push_str(&format!("   Warning: {limit}\n"));
        }
        out.push_str(&format!(
            "  Restarts: {}; last exit status {}\n",
            self.restarts, self.exit_status
        ));
        if !self.desired.is_empty() {
            out.push_str(&format!(
                "   Desired: {} by request since {} (`corralctl revert {name}` to follow autostart)\n",
                self.desired,
                format_timestamp(self.desired_since)
            ));
        }
        if !self.status_text.is_empty() {
            out.push_str(&format!("    Status: \"{}\"\n", self.status_text));
        }
        if self.health != "unknown" || self.last_health_check != 0 {
            out.push_str(&format!(
                "    Health: {} (last check {})\n",
                self.health,
                format_timestamp(self.last_health_check)
            ));
        }
        if self.result != "success" {
            out.push_str(&format!("    Result: {}\n", self.result));
        }
        if !self.last_error.is_empty() {
            out.push_str(&format!("     Error: {}\n", self.last_error));
        }
        if !self.methods.is_empty() {
            out.push_str(&format!("   Methods: {}\n", self.methods.join(", ")));
        }
        if !self.recipes.is_empty() {
            out.push_str(&format!("   Recipes: {}\n", self.recipes.join(", ")));
        }
        out.push_str(&format!(
            "    Online: {}\n",
            if self.online { "yes" } else { "no" }
        ));
        out
    }
}

/// `2026-11-22 03:04:05 UTC` from µs since the epoch (no time-zone database needed).
pub fn format_timestamp(usec: u64) -> String {
    if usec == 0 {
        return "-".to_owned();
    }
    let t = crate::utc::Utc::from_epoch_secs(usec / 1_000_000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_readable() {
        assert_eq!(format_timestamp(0), "-");
        assert_eq!(
            format_timestamp(1_795_316_415_394_437),
            "2026-11-22 03:00:15 UTC"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_000),
            "2000-02-29 00:00:00 UTC"
        );
    }
}
