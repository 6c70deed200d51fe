//! JPKI certificates: profile, chain validation, demo PKI.
