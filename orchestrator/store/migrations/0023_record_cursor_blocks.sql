-- Issue 18, goal 2: a batch reserves its cursors in blocks. Each nextval of `records_cursor_seq` now hands out
-- the start of a block of 1000 cursors: one call covers up to 1000 records, where it took one call per record
-- (4.5-5 ms of backend CPU per 5,000-record batch). No value inside a block can go to anyone else: every other
-- nextval lands a whole step away, so cursors stay unique. The writer reads the step from `pg_sequence` with the
-- block (orchestrator/store/records.py `_STAMP`), so code and sequence never disagree, and a writer that still
-- takes one nextval per record (a pod of the previous release during a rolling upgrade, a row's DEFAULT, a delete)
-- gets distinct, ascending cursors as before, only farther apart. Cursors stay increasing: the next value is the
-- last one handed out plus the step.
ALTER SEQUENCE records_cursor_seq INCREMENT BY 1000;
