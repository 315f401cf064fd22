"""One module per dashboard page (its handlers, its route table and what only it renders)."""
