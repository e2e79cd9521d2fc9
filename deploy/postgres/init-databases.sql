-- One database per service (each keeps its own event store and read models). The postgres
-- image runs this once, when its data directory is first initialised.
CREATE DATABASE ledger;
CREATE DATABASE dunning;
CREATE DATABASE credit;
