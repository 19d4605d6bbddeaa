"""Template and plugin catalogs: parsing repositories, fetching them with Git, storing rows."""
