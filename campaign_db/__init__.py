"""The campaign database: tables, engines, migrations, the catalog and every query.

Only this package talks SQL; everything else calls its keyword-only query functions.
"""
