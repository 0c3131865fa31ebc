"""The stores the optimizer's use cases need, as Protocols; `campaign_db` implements them."""
