//! Who may change what. Reading is open to every local user; every state change is allowed
//! to uid 0 and otherwise decided by polkit for the *caller* — the subject is the caller's
//! unique bus name (`system-bus-name`), never corrald's own process (the bug system76-power
//! shipped). Without polkit on the bus, non-root callers are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use zbus::Connection;
use zbus::message::{Flags, Header};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::errors::{BusError, BusResult};

/// The polkit actions corral defines (see `packaging/org.corral.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// start/stop/restart/pause/resume/kill/Call/RunRecipe.
    Manage,
    /// `Reload()`.
    Reload,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::Manage => "org.corral.manage",
            Action::Reload => "org.corral.reload",
        }
    }
}

/// The uid of each caller seen lately, per bus (its GUID) and unique name. The bus never
/// gives a unique name to a second connection, so an entry cannot go stale; the map is
/// emptied when it holds [`CALLERS_CAP`] names. Without it every state-changing call cost a
/// second round trip through the bus (`GetConnectionUnixUser`) before its work began. A std
/// mutex: held for one map operation, never across an await.
static CALLERS: Mutex<Option<HashMap<String, HashMap<String, u32>>>> = Mutex::new(None);

const CALLERS_CAP: usize = 4096;

async fn caller_uid(
    connection: &Connection,
    sender: &zbus::names::UniqueName<'_>,
) -> BusResult<u32> {
    let bus = connection.server_guid().as_str();
    let cached = |callers: &Option<HashMap<String, HashMap<String, u32>>>| {
        callers.as_ref()?.get(bus)?.get(sender.as_str()).copied()
    };
    if let Some(uid) = cached(&CALLERS.lock().expect("callers lock")) {
        return Ok(uid);
    }
    let dbus = zbus::fdo::DBusProxy::new(connection).await?;
    let uid = dbus
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|err| BusError::AccessDenied(format!("cannot tell who {sender} is: {err}")))?;
    let mut callers = CALLERS.lock().expect("callers lock");
    let all = callers.get_or_insert_with(HashMap::new);
    if all.values().map(HashMap::len).sum::<usize>() >= CALLERS_CAP {
        all.clear();
    }
    all.entry(bus.to_owned())
        .or_default()
        .insert(sender.to_string(), uid);
    Ok(uid)
}

/// Polkit checks under way per uid. A user who floods corrald with calls it must ask polkit
/// about gets [`POLKIT_CHECKS_PER_UID`] of them through the bus at a time; the rest wait in
/// corrald rather than as messages queued in dbus-daemon ahead of everyone else's calls
/// (tests/hostile_callers.rs measures a quiet client's `Get` during such a flood). One
/// semaphore per uid that ever needed polkit: a handful on any host.
static POLKIT_CHECKS: Mutex<Option<HashMap<u32, Arc<Semaphore>>>> = Mutex::new(None);

const POLKIT_CHECKS_PER_UID: usize = 4;

async fn polkit_turn(uid: u32) -> Option<OwnedSemaphorePermit> {
    let semaphore = POLKIT_CHECKS
        .lock()
        .expect("polkit checks lock")
        .get_or_insert_with(HashMap::new)
        .entry(uid)
        .or_insert_with(|| Arc::new(Semaphore::new(POLKIT_CHECKS_PER_UID)))
        .clone();
    semaphore.acquire_owned().await.ok()
}

/// Allows the call in `header` to perform `action`, or says why not. Returns who the caller
/// is (`"uid 1000"`), for records such as a service's desired state.
pub async fn authorize(
    connection: &Connection,
    header: &Header<'_>,
    action: Action,
) -> BusResult<String> {
    let sender = header
        .sender()
        .ok_or_else(|| BusError::AccessDenied("the call has no sender".into()))?;
    let uid = caller_uid(connection, sender).await?;
    if uid == 0 {
        return Ok("uid 0".to_owned());
    }
    let denied = |why: String| {
        BusError::AccessDenied(format!(
            "uid {uid} may not perform {} on corral: {why}",
            action.id()
        ))
    };
    let subject = Subject::new_for_message_header(header).map_err(|err| denied(err.to_string()))?;
    let flags = if header
        .primary()
        .flags()
        .contains(Flags::ALLOW_INTERACTIVE_AUTH)
    {
        CheckAuthorizationFlags::ALLOW_USER_INTERACTION
    } else {
        CheckAuthorizationFlags::empty()
    };
    // Held until polkit answered: the uid's other calls wait here, inside corrald.
    let _turn = polkit_turn(uid).await;
    let authority = AuthorityProxy::new(connection)
        .await
        .map_err(|err| denied(format!("polkit is not reachable ({err}); only root may")))?;
    let result = authority
        .check_authorization(&subject, action.id(), &HashMap::new(), flags, "")
        .await
        .map_err(|err| denied(format!("polkit is not available ({err}); only root may")))?;
    if result.is_authorized {
        Ok(format!("uid {uid}"))
    } else if result.is_challenge {
        Err(denied(
            "polkit requires authentication; call again allowing interactive authorization \
             (e.g. `busctl --allow-interactive-authorization=yes` with an agent running) or use sudo"
                .into(),
        ))
    } else {
        Err(denied("polkit refused".into()))
    }
}
