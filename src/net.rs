//! Networking: serving tonic and plain HTTP on glommio executors.
