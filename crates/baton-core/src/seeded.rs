//! Defects seeded into the machines by the model check, to show that it
//! catches them. Only in this crate's own tests: in every other build
//! [`defect`] is a constant `false`, so the shipped code has none.

/// A defect the model check can seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Defect {
    /// The lease is valid for a TTL from when the vote was decided,
    /// instead of from when the requests went out.
    ValidityFromDecision,
    /// A won vote hands out its fence without settling it on a quorum.
    FenceBeforeSettled,
    /// An extend's or renewal's "yes" revives a lease that was already
    /// lost (its deadline passed, or it was given up), however late it
    /// comes back.
    LateExtendRevives,
    /// A fair lock's handed lease counts its validity from the grant's
    /// arrival instead of from the waiter's last queued attempt.
    HandedFromGrant,
    /// A fair lock's grant is taken whatever its fence: also one from a
    /// hand-off that lapsed before the waiter's last queued attempt landed.
    StaleGrantTaken,
}

#[cfg(test)]
thread_local! {
    static SEEDED: std::cell::Cell<Option<Defect>> = const { std::cell::Cell::new(None) };
}

/// Whether `defect` is seeded on this thread.
#[cfg(test)]
pub(crate) fn defect(defect: Defect) -> bool {
    SEEDED.with(|seeded| seeded.get() == Some(defect))
}

/// Never, outside this crate's tests.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn defect(_: Defect) -> bool {
    false
}

/// Seeds `defect` on this thread (`None` clears it).
#[cfg(test)]
pub(crate) fn seed(defect: Option<Defect>) {
    SEEDED.with(|seeded| seeded.set(defect));
}
