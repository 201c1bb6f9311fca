"""Every query lives here, one module per aggregate, keyword-only arguments."""
