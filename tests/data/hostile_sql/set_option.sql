-- expect: refused
-- Re-enabling recursive CTEs from SQL
SET datafusion.execution.enable_recursive_ctes = true
