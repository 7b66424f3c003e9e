"""Pure helpers with no I/O, used by every stage: clock, untrusted text, addresses,
schedules, and the registry of process-wide caches."""
