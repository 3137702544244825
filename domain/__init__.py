"""What every layer shares and nothing below it defines: the service's error type."""
