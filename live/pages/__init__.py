"""The browser pages served by `live serve`: start page, host console, watch page."""
