"""A realistic, deterministic e-commerce shop with labelled incidents (``storefence simulate``)."""
