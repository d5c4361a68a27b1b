//! The cold-cache scenario's report (filled in below).
