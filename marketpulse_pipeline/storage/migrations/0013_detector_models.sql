-- Each symbol's newest fitted model per method (the Isolation Forest's), so a daily run scores
-- without refitting. `version` names everything the model was fitted from (engine and release,
-- parameters, the training rows): a model whose version differs from the one a run computes is
-- refitted and replaced. Older refit points' models are not kept: their sessions are scored,
-- and refitting one for a re-run costs milliseconds.
CREATE TABLE detector_models (
    method     text        NOT NULL,
    symbol     text        NOT NULL,
    fitted_at  date        NOT NULL,
    version    text        NOT NULL,
    model      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, symbol)
);
