-- Every method's anomalies carry a tail probability: how rare the day's score is among the
-- symbol's scores of the previous year, so that p = 0.002 means the same for every method and
-- symbol. The anomalies (and the consensus built on them) are recomputed once, with it.
ALTER TABLE anomalies ADD COLUMN p_value double precision CHECK (p_value BETWEEN 0 AND 1);
COMMENT ON COLUMN anomalies.p_value IS
    'Tail probability of the score among the symbol''s previous year of scores of the method.';
TRUNCATE anomalies, anomaly_consensus;
DELETE FROM watermarks WHERE target LIKE 'anomalies%' OR target = 'anomaly_consensus';
