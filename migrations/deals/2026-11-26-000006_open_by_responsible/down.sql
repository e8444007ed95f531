DROP INDEX deals.deals_open_responsible_idx;
