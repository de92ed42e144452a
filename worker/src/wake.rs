//! When an idle pool fetches: at once on a queue notification, again a moment
//! later, and once a second regardless.
//!
//! The second look closes a race apalis leaves open: a notification that
//! arrives while a fetch is already in flight wakes the pool, but that fetch
//! ran before the job was visible and comes back empty, and the pool would
//! sleep until the fallback poll (seen as 100–300 ms pickups in CI). The
//! fallback poll covers delayed retries, which send no notification, and
//! notifications lost in a reconnect.
//!
//! A finished job looks again too ([`Wake::look_soon`]): apalis sends its
//! acknowledgement with the next fetch, and when the queue has just run dry
//! nothing else would fetch before the fallback poll, so a burst's last
//! acknowledgements waited up to a second.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;

/// How long after a notification the pool looks again.
const SECOND_LOOK: Duration = Duration::from_millis(10);

/// The poll strategy of a queue's pool (shared by its restarts).
#[derive(Clone)]
pub struct Wake(Arc<Mutex<Inner>>);

struct Inner {
    notified: UnboundedReceiver<()>,
    /// The pool's task, to wake when a look is asked for from outside.
    waker: Option<std::task::Waker>,
    second_look: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    fallback: tokio::time::Interval,
}

impl Wake {
    /// Wakes on `notified`, and every `fallback`. Needs a tokio runtime.
    pub fn new(notified: UnboundedReceiver<()>, fallback: Duration) -> Self {
        let mut fallback = tokio::time::interval(fallback);
        fallback.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(Arc::new(Mutex::new(Inner { notified, waker: None, second_look: None, fallback })))
    }

    /// Has the pool fetch again shortly (a job finished): one look for all
    /// the jobs that finish within [`SECOND_LOOK`] of each other.
    pub fn look_soon(&self) {
        let mut inner = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.second_look.is_none() {
            inner.second_look = Some(Box::pin(tokio::time::sleep(SECOND_LOOK)));
            if let Some(waker) = inner.waker.take() {
                waker.wake();
            }
        }
    }
}

impl PollStrategy for Wake {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut inner = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.waker = Some(cx.waker().clone());
        let mut wake = false;
        // Several notifications at once are one fetch (and one second look).
        while let Poll::Ready(Some(())) = inner.notified.poll_next_unpin(cx) {
            wake = true;
        }
        if wake {
            inner.second_look = Some(Box::pin(tokio::time::sleep(SECOND_LOOK)));
        }
        if let Some(look) = inner.second_look.as_mut()
            && look.as_mut().poll(cx).is_ready()
        {
            inner.second_look = None;
            wake = true;
        }
        if inner.fallback.poll_tick(cx).is_ready() {
            wake = true;
        }
        if wake { Poll::Ready(Some(())) } else { Poll::Pending }
    }
}
