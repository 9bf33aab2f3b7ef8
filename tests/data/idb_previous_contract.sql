-- An IDB in the layout of ccmart's previous contract (before issue 16 moved it to the vendor's names): the contract
-- DDL (data/idb/icon_idb.sql) was applied and filled, then three of the previous layout's differences were put back
-- with these statements. tests/it/pg_e2e.rs (`schema_check_names_what_differs_and_the_other_tables_still_extract`)
-- expects the start-up schema check and `ccmart check-idb` to report exactly these three problems and every other
-- table to be extracted.

-- A required column under its old name (the vendor's key of G_PARTY_HISTORY is PHID): G_PARTY_HISTORY is not
-- extracted.
ALTER TABLE G_PARTY_HISTORY RENAME COLUMN PHID TO ID;

-- An optional column under its old name (the vendor's is TYPE): read as NULL, RESOURCE_GROUP.group_type is 'Other'.
ALTER TABLE GC_GROUP RENAME COLUMN TYPE TO GROUPTYPE;

-- An optional column with another type: read as NULL, INTERACTION_FACT.switch_id is NULL.
ALTER TABLE G_CALL ALTER COLUMN SWITCHID TYPE varchar(16);
