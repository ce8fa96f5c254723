//! This host's etcd session: a lease, kept alive, and the arithmetic that tells the host to
//! stop serving before the lease can expire.
//!
//! # The margin
//!
//! `T` is the lease TTL (`lease_ttl`, 10 s by default). Keep-alives go out every `T/3`.
//! etcd renews the lease when it *processes* a keep-alive, which is after we sent it, so
//! a keep-alive sent at `s` and acknowledged proves the lease cannot expire before
//! `E = s + T` (measured on this host's monotonic clock; the two clocks' rates differ by
//! parts per million, far below the guard below). Each acknowledgement moves `E`.
//!
//! - At `L = E − T/3` without a newer acknowledgement, the host has **lost contact**: the
//!   keep-alive sent `T/3` before had a whole period to be answered and was not. The fleet
//!   tells the applier to stop every fleet group now.
//! - The services must be gone by `D = E − G`, the guard `G = T/20` (at least 100 ms):
//!   that is the `stop_by` deadline the applier receives, `T/3 − T/20` after `L`
//!   (2.83 s with the default `T`; 8.5 s with `lease_ttl = "30s"`). A grouped service
//!   whose orderly stop takes longer than that is killed at `D`.
//! - Only after `E` can etcd expire the lease and delete the owner keys, so no other host
//!   can take a group before this host stopped serving it.
//!
//! The session never gives up: after a lost lease it keeps retrying (with back-off up to
//! one second) and grants a new lease as soon as etcd answers again.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, Error as EtcdError};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};

/// The durations that follow from the lease TTL (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub ttl: Duration,
}

impl Timing {
    /// How often a keep-alive goes out.
    pub fn keep_alive_period(&self) -> Duration {
        self.ttl / 3
    }

    /// When, for a lease that cannot expire before `expires`, contact counts as lost.
    pub fn lost_at(&self, expires: Instant) -> Instant {
        expires - self.ttl / 3
    }

    /// When, for that lease, the services of every fleet group must be gone.
    pub fn stop_by(&self, expires: Instant) -> Instant {
        expires - (self.ttl / 20).max(Duration::from_millis(100))
    }

    /// How long one etcd request may take before it counts as failed.
    pub fn request_timeout(&self) -> Duration {
        self.ttl / 3
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)
    }
}

/// What the session learns about its lease, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseNews {
    /// A new lease `id` was granted; nothing is held under it yet.
    Granted { id: i64, expires: Instant },
    /// A keep-alive of `id` was acknowledged: it cannot expire before `expires`.
    Renewed { id: i64, expires: Instant },
    /// etcd says `id` no longer exists (expired or revoked): every key under it is gone.
    Gone { id: i64 },
    /// A request failed; the session retries. For the log.
    Trouble(String),
}

/// Doubling retry delay from 100 ms to one second.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Grants leases and keeps them alive for as long as `news` has a receiver, reporting
/// every step. Runs as its own task so that no other etcd request can delay a keep-alive.
///
/// `inherited`: a lease granted to the corrald this one re-executed from; it is kept alive
/// first, and a new one granted only once etcd says it is gone.
pub(crate) async fn keep_lease(
    client: Client,
    timing: Timing,
    news: UnboundedSender<LeaseNews>,
    inherited: Option<i64>,
) {
    let mut backoff = Backoff::new();
    if let Some(id) = inherited {
        // Granted as of now: the previous image renewed it until a moment ago, and the
        // first keep-alive's answer sets the real expiry.
        let granted = LeaseNews::Granted {
            id,
            expires: Instant::now() + timing.ttl,
        };
        if news.send(granted).is_err() {
            return;
        }
        keep_alive(&client, id, timing.ttl, timing, &news, &mut backoff).await;
    }
    while !news.is_closed() {
        let sent = Instant::now();
        let mut leases = client.lease_client();
        let granted = timeout(
            timing.request_timeout(),
            leases.grant(timing.ttl_secs(), None),
        )
        .await;
        let (id, ttl) = match granted {
            Ok(Ok(lease)) if lease.ttl() > 0 => (lease.id(), secs(lease.ttl())),
            failed => {
                let _ = news.send(LeaseNews::Trouble(format!(
                    "cannot get a lease: {}",
                    describe(failed.map(|r| r.map(|_| ())))
                )));
                sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        if news
            .send(LeaseNews::Granted {
                id,
                expires: sent + ttl,
            })
            .is_err()
        {
            return;
        }
        keep_alive(&client, id, ttl, timing, &news, &mut backoff).await;
    }
}

/// Keeps lease `id` alive, reopening the keep-alive stream whenever it breaks, until etcd
/// says the lease is gone (or nobody listens any more).
async fn keep_alive(
    client: &Client,
    id: i64,
    ttl: Duration,
    timing: Timing,
    news: &UnboundedSender<LeaseNews>,
    backoff: &mut Backoff,
) {
    while !news.is_closed() {
        let sent = Instant::now();
        let mut leases = client.lease_client();
        let opened = timeout(timing.request_timeout(), leases.keep_alive(id)).await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(pair)) => pair,
            // The crate's word for a keep-alive answered with TTL 0: no such lease.
            Ok(Err(EtcdError::LeaseKeepAliveError(_))) => {
                let _ = news.send(LeaseNews::Gone { id });
                return;
            }
            failed => {
                let _ = news.send(LeaseNews::Trouble(format!(
                    "cannot renew the lease: {}",
                    describe(failed.map(|r| r.map(|_| ())))
                )));
                sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        // Opening the stream sent one keep-alive and awaited its answer.
        let _ = news.send(LeaseNews::Renewed {
            id,
            expires: sent + ttl,
        });
        // When each unanswered keep-alive went out: answers come in order on the stream.
        let mut unanswered: VecDeque<Instant> = VecDeque::new();
        let period = timing.keep_alive_period();
        let mut tick = interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A whole TTL without answers: this stream is dead, open another.
                    if unanswered.len() >= 3 {
                        let _ = news.send(LeaseNews::Trouble(
                            "no answer to three keep-alives: reconnecting".into(),
                        ));
                        break;
                    }
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    unanswered.push_back(Instant::now());
                }
                message = stream.message() => match message {
                    Ok(Some(answer)) if answer.ttl() > 0 => {
                        if let Some(sent) = unanswered.pop_front() {
                            let expires = sent + secs(answer.ttl());
                            if news.send(LeaseNews::Renewed { id, expires }).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Some(_)) => {
                        let _ = news.send(LeaseNews::Gone { id });
                        return;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        let _ = news.send(LeaseNews::Trouble(format!("keep-alive stream: {error}")));
                        break;
                    }
                },
            }
        }
        if news.is_closed() {
            return;
        }
        sleep(backoff.next_delay()).await;
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// One line for a request that failed or timed out.
pub(crate) fn describe(
    result: Result<Result<(), EtcdError>, tokio::time::error::Elapsed>,
) -> String {
    match result {
        Ok(Ok(())) => "etcd answered without a usable lease".into(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "etcd did not answer in time".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_arithmetic() {
        let timing = Timing {
            ttl: Duration::from_secs(10),
        };
        let now = Instant::now();
        let expires = now + Duration::from_secs(10);
        assert_eq!(
            timing.keep_alive_period(),
            Duration::from_millis(3333) + Duration::from_nanos(333_333)
        );
        assert_eq!(
            timing.lost_at(expires) - now,
            Duration::from_secs(10) - timing.ttl / 3
        );
        assert_eq!(timing.stop_by(expires) - now, Duration::from_millis(9500));
        // The applier's window between "lost" and "must be stopped" is T/3 - T/20.
        let window = timing.stop_by(expires) - timing.lost_at(expires);
        assert!(window > Duration::from_millis(2800) && window < Duration::from_millis(2900));
        // The guard has a floor for short TTLs.
        let short = Timing {
            ttl: Duration::from_secs(1),
        };
        assert_eq!(expires - short.stop_by(expires), Duration::from_millis(100));
    }

    #[test]
    fn backoff_doubles_to_a_second() {
        let mut backoff = Backoff::new();
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }
}
