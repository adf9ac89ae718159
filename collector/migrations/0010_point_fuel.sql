-- A fuel counter's measured fuel parameters (site file: points[].fuel), e.g. from the plant's
-- lab: GB/T 32151 asks for measured values where they exist, and raw coal (原煤) has no official
-- carbon content at all. The API and the upload indicators pass them to the accounting core,
-- where they take precedence over the default fuel family for this point: CO2 = quantity x NCV x
-- carbon content x oxidation rate x 44/12, and a measured NCV also sets the standard coal
-- (NCV / 29.3076 GJ/tce). NULL: not measured, the family default applies.
ALTER TABLE points
    ADD COLUMN fuel_ncv double precision CHECK (fuel_ncv > 0),                      -- GJ/t, or GJ/10^4Nm3
    ADD COLUMN fuel_carbon_content double precision CHECK (fuel_carbon_content > 0), -- tC/GJ
    ADD COLUMN fuel_oxidation_rate double precision
        CHECK (fuel_oxidation_rate > 0 AND fuel_oxidation_rate <= 1),                -- fraction
    ADD COLUMN fuel_source text;                                                      -- e.g. lab report 2026-03
