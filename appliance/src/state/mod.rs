//! The appliance's queryable state in sled: a materialized view of the journal, holding nothing
//! that the journal cannot rebuild.
