//! The long-running appliance (`otgate serve`): `run(config, listeners, clock, shutdown)` wires
//! journal, state, stores, grants, tunnel and brokers together and owns the shutdown broadcast.
