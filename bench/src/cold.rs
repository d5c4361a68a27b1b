//! The cold-cache scenario (filled in below).
