-- A counter point's plausibility limit (site file: points[].max_rate): the most the counter can
-- advance per hour, in the point's unit. The interval builder passes it to the accounting core,
-- which flags a faster step as a spike and does not count it, and believes a register wrap only
-- when the advance it implies is within it. NULL: no limit configured (the core still skips lone
-- garbage reads and takes an implausibly large wrap for a reset).
ALTER TABLE points ADD COLUMN max_rate_per_hour double precision CHECK (max_rate_per_hour > 0);
