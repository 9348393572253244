-- Methods flag very different shares of days; recall at a fixed budget compares them fairly:
-- each method's strongest 0.5 %, 1 % and 2 % of symbol-days, and the anomalies they find.
ALTER TABLE detection_quality
    ADD COLUMN recall_at_0_5pct double precision,
    ADD COLUMN recall_at_1pct   double precision,
    ADD COLUMN recall_at_2pct   double precision;
