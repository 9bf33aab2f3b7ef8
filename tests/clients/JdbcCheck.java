// pgjdbc compatibility checks: ccmart vs PostgreSQL (see README.md).
//   java -Duser.timezone=Europe/Berlin -cp /usr/share/java/postgresql.jar \
//        tests/clients/JdbcCheck.java --ccmart DSN --postgres DSN [--only a,b]
// DSNs are postgresql:// URLs; they are turned into jdbc:postgresql:// URLs with
// connectTimeout=10 and socketTimeout=60.
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.time.Instant;
import java.util.*;

public class JdbcCheck {
    static final String CLIENT = "pgjdbc";
    // Checks that fail against ccmart today (strict xfail: a listed check that passes fails the run).
    static final Set<String> EXPECTED_GAPS = new HashSet<>(Arrays.asList(
        "getString_timestamptz"));
    static final String[] SIDES = {"ccmart", "postgres"};
    static final Map<String, Boolean> results = new LinkedHashMap<>();
    static final Map<String, String> dsns = new HashMap<>();
    static Set<String> only = null;

    interface Fn { Object run(Connection c) throws Exception; }

    static final class Failure {
        final String text;
        Failure(Throwable e) {
            String st = (e instanceof SQLException) ? ((SQLException) e).getSQLState() : null;
            text = "ERROR " + (st == null ? "-----" : st) + " " + e.getClass().getName() + ": " + e.getMessage();
        }
        public String toString() { return text; }
    }

    static Connection connect(String side) throws Exception {
        URI u = new URI(dsns.get(side));
        String host = u.getHost();
        if (!("127.0.0.1".equals(host) || "localhost".equals(host))) throw new IllegalArgumentException("non-local host " + host);
        int port = u.getPort() < 0 ? 5432 : u.getPort();
        String db = u.getPath() == null || u.getPath().length() <= 1 ? "postgres" : u.getPath().substring(1);
        Properties p = new Properties();
        String ui = u.getRawUserInfo();
        if (ui != null) {
            String[] parts = ui.split(":", 2);
            p.setProperty("user", URLDecoder.decode(parts[0], StandardCharsets.UTF_8));
            if (parts.length > 1) p.setProperty("password", URLDecoder.decode(parts[1], StandardCharsets.UTF_8));
        }
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "60");
        p.setProperty("loginTimeout", "10");
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
    }

    static Object runSide(String side, Fn fn) {
        try (Connection c = connect(side)) { return fn.run(c); } catch (Throwable e) { return new Failure(e); }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default: if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch)); else b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    static String show(Object o) {
        String s = String.valueOf(o);
        if (o instanceof String && !(o instanceof Failure)) s = (String) o;
        return s.length() > 3000 ? s.substring(0, 3000) + "... <" + (s.length() - 3000) + " more chars>" : s;
    }

    static void record(String check, boolean ok, Object c, Object p, String extra) {
        StringBuilder b = new StringBuilder("{\"client\": ").append(json(CLIENT)).append(", \"check\": ").append(json(check))
            .append(", \"ok\": ").append(ok).append(", \"ccmart\": ").append(json(show(c)))
            .append(", \"postgres\": ").append(json(show(p)));
        if (extra != null) b.append(", ").append(extra);
        if (EXPECTED_GAPS.contains(check)) b.append(", \"expected_gap\": true");
        System.out.println(b.append("}"));
        results.put(check, ok);
    }

    static boolean wanted(String check) { return only == null || only.contains(check); }

    static void compare(String check, Fn fn) {
        if (!wanted(check)) return;
        Object c = runSide("ccmart", fn), p = runSide("postgres", fn);
        if (c instanceof Failure || p instanceof Failure) { record(check, false, c, p, "\"diff\": \"raised\""); return; }
        boolean ok = Objects.equals(c, p);
        String d = ok ? null : "\"diff\": " + json(firstDiff(c, p));
        record(check, ok, c, p, d);
    }

    /** ccmart must not throw; PostgreSQL's answer is shown for reference. */
    static void noThrow(String check, Fn fn) {
        if (!wanted(check)) return;
        Object c = runSide("ccmart", fn), p = runSide("postgres", fn);
        record(check, !(c instanceof Failure) && !(p instanceof Failure), c, p, "\"expect\": \"does not throw\"");
    }

    static String firstDiff(Object a, Object b) {
        if (a instanceof List && b instanceof List) {
            List<?> x = (List<?>) a, y = (List<?>) b;
            for (int i = 0; i < Math.min(x.size(), y.size()); i++)
                if (!Objects.equals(x.get(i), y.get(i))) return "$[" + i + "]: " + x.get(i) + " != " + y.get(i);
            if (x.size() != y.size()) return "$: length " + x.size() + " != " + y.size();
        }
        return "$: " + show(a) + " != " + show(b);
    }

    static List<List<Object>> rows(ResultSet rs, String... cols) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        while (rs.next()) {
            List<Object> r = new ArrayList<>();
            for (String c : cols) r.add(rs.getObject(c));
            out.add(r);
        }
        rs.close();
        return out;
    }

    /** Rows as the strings getString gives: what metadata consumers read (getInt/getShort parse either width). */
    static List<List<Object>> textRows(ResultSet rs, String... cols) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        while (rs.next()) {
            List<Object> r = new ArrayList<>();
            for (String c : cols) r.add(rs.getString(c));
            out.add(r);
        }
        rs.close();
        return out;
    }

    static Set<String> publicTables;

    public static void main(String[] argv) throws Exception {
        for (int i = 0; i < argv.length; i++) {
            if (argv[i].equals("--ccmart")) dsns.put("ccmart", argv[++i]);
            else if (argv[i].equals("--postgres")) dsns.put("postgres", argv[++i]);
            else if (argv[i].equals("--only")) only = new HashSet<>(Arrays.asList(argv[++i].split(",")));
            else { System.err.println("unknown argument " + argv[i]); System.exit(2); }
        }
        if (dsns.get("ccmart") == null) dsns.put("ccmart", System.getenv("CCMART_DSN"));
        if (dsns.get("postgres") == null) dsns.put("postgres", System.getenv("POSTGRES_DSN"));
        if (dsns.get("ccmart") == null || dsns.get("postgres") == null) { System.err.println("--ccmart and --postgres are required"); System.exit(2); }
        DriverManager.setLoginTimeout(10);

        compare("user_timezone_is_berlin", c -> TimeZone.getDefault().getID());
        compare("connect_select", c -> {
            try (Statement s = c.createStatement()) {
                return rows(s.executeQuery("SELECT media_type_key, media_type FROM media_type ORDER BY media_type_key"),
                            "media_type_key", "media_type");
            }
        });
        compare("metadata_major_version_ge_9", c -> c.getMetaData().getDatabaseMajorVersion() >= 9);
        compare("metadata_product_name", c -> c.getMetaData().getDatabaseProductName());

        // midpoint of the data's time range, from PostgreSQL, as an Instant
        long mid = 0;
        try (Connection c = connect("postgres"); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT (min(start_ts) + max(start_ts)) / 2 FROM interaction_fact")) {
            if (rs.next()) mid = rs.getLong(1);
        } catch (Exception e) { System.err.println("# could not compute midpoint: " + e); }
        final Instant cutoff = Instant.ofEpochSecond(mid);
        compare("count_since_setTimestamp_instant", c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM interaction_fact WHERE to_timestamp(start_ts) >= ?")) {
                ps.setTimestamp(1, Timestamp.from(cutoff));
                try (ResultSet rs = ps.executeQuery()) { rs.next(); return rs.getLong(1); }
            }
        });
        compare("count_since_setObject_offsetdatetime", c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM interaction_fact WHERE to_timestamp(start_ts) >= ?")) {
                ps.setObject(1, cutoff.atOffset(java.time.ZoneOffset.ofHours(1)));
                try (ResultSet rs = ps.executeQuery()) { rs.next(); return rs.getLong(1); }
            }
        });
        compare("getTimestamp_getTime", c -> {
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT interaction_id, to_timestamp(start_ts) AS started "
                         + "FROM interaction_fact ORDER BY interaction_id LIMIT 25")) {
                List<List<Object>> out = new ArrayList<>();
                while (rs.next()) out.add(Arrays.asList(rs.getLong(1), rs.getTimestamp(2).getTime()));
                return out;
            }
        });
        compare("getObject_offsetdatetime", c -> {
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT to_timestamp(start_ts) FROM interaction_fact ORDER BY interaction_id LIMIT 5")) {
                List<Object> out = new ArrayList<>();
                while (rs.next()) out.add(String.valueOf(rs.getObject(1, java.time.OffsetDateTime.class)));
                return out;
            }
        });
        compare("getString_timestamptz", c -> {
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT to_timestamp(start_ts) FROM interaction_fact ORDER BY interaction_id LIMIT 5")) {
                List<Object> out = new ArrayList<>();
                while (rs.next()) out.add(rs.getString(1));
                return out;
            }
        });
        compare("resultset_metadata_types", c -> {
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT interaction_id, media_type, duration, to_timestamp(start_ts) AS t "
                         + "FROM interaction_fact ORDER BY interaction_id LIMIT 1")) {
                ResultSetMetaData m = rs.getMetaData();
                List<Object> out = new ArrayList<>();
                for (int i = 1; i <= m.getColumnCount(); i++)
                    out.add(m.getColumnLabel(i) + ":" + m.getColumnType(i) + ":" + m.getColumnTypeName(i));
                return out;
            }
        });

        // --- DatabaseMetaData
        compare("dbmd_getTables_public", c -> {
            try (ResultSet rs = c.getMetaData().getTables(null, "public", "%", new String[]{"TABLE", "VIEW"})) {
                List<List<Object>> r = rows(rs, "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE");
                r.sort(Comparator.comparing(Object::toString));
                return r;
            }
        });
        compare("dbmd_getColumns_names_types", c -> {
            try (ResultSet rs = c.getMetaData().getColumns(null, "public", "%", "%")) {
                List<List<Object>> r = new ArrayList<>();
                while (rs.next()) r.add(Arrays.asList(rs.getString("TABLE_NAME"), rs.getInt("ORDINAL_POSITION"),
                        rs.getString("COLUMN_NAME"), rs.getInt("DATA_TYPE")));
                rs.close();
                r.sort(Comparator.comparing(Object::toString));
                return r;
            }
        });
        compare("dbmd_getColumns_type_names", c -> {
            try (ResultSet rs = c.getMetaData().getColumns(null, "public", "interaction_fact", "%")) {
                List<List<Object>> r = new ArrayList<>();
                while (rs.next()) r.add(Arrays.asList(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME")));
                rs.close();
                return r;
            }
        });
        // The mirror declares the keys PostgreSQL-side from the column names alone (mirror.py), so these compare
        // ccmart's declared star schema with PostgreSQL's answer for the same keys. Compared as text: KEY_SEQ,
        // UPDATE_RULE, TYPE... are int4 in PostgreSQL (its integer literals) and int8 in ccmart (DataFusion's).
        for (String t : new String[]{"interaction_fact", "interaction_resource_fact", "resource_", "ag2_queue_day"}) {
            compare("dbmd_getPrimaryKeys_" + t, c -> textRows(c.getMetaData().getPrimaryKeys(null, "public", t),
                    "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
            compare("dbmd_getImportedKeys_" + t, c -> textRows(c.getMetaData().getImportedKeys(null, "public", t),
                    "PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "KEY_SEQ", "UPDATE_RULE",
                    "DELETE_RULE", "FK_NAME", "PK_NAME", "DEFERRABILITY"));
            compare("dbmd_getIndexInfo_" + t, c -> textRows(c.getMetaData().getIndexInfo(null, "public", t, false, true),
                    "TABLE_NAME", "NON_UNIQUE", "INDEX_NAME", "TYPE", "ORDINAL_POSITION", "COLUMN_NAME",
                    "ASC_OR_DESC"));
        }
        compare("dbmd_getExportedKeys_resource_", c -> {
            List<List<Object>> r = textRows(c.getMetaData().getExportedKeys(null, "public", "resource_"),
                    "PKTABLE_NAME", "PKCOLUMN_NAME", "FKTABLE_NAME", "FKCOLUMN_NAME", "FK_NAME");
            r.sort(Comparator.comparing(Object::toString));
            return r;
        });
        noThrow("dbmd_getTypeInfo_no_throw", c -> {
            try (ResultSet rs = c.getMetaData().getTypeInfo()) { int n = 0; while (rs.next()) n++; return n + " types"; }
        });
        noThrow("dbmd_getSchemas_no_throw", c -> rows(c.getMetaData().getSchemas(), "TABLE_SCHEM").size() + " schemas");

        int failedUnexpected = 0, passedGaps = 0;
        List<String> fu = new ArrayList<>(), pg = new ArrayList<>(), gf = new ArrayList<>();
        int passed = 0;
        for (Map.Entry<String, Boolean> e : results.entrySet()) {
            boolean gap = EXPECTED_GAPS.contains(e.getKey());
            if (e.getValue()) passed++;
            if (!e.getValue() && !gap) fu.add(json(e.getKey()));
            if (e.getValue() && gap) pg.add(json(e.getKey()));
            if (!e.getValue() && gap) gf.add(json(e.getKey()));
        }
        String msg = pg.isEmpty() ? "" : ", \"message\": " + json("these checks pass now: remove them from EXPECTED_GAPS in JdbcCheck.java: " + pg);
        System.out.println("{\"client\": \"" + CLIENT + "\", \"summary\": true, \"checks\": " + results.size() + ", \"passed\": " + passed
            + ", \"failed\": " + (results.size() - passed) + ", \"expected_gaps_failing\": " + gf + ", \"unexpected_failures\": " + fu
            + ", \"gaps_now_passing\": " + pg + msg + "}");
        System.exit(fu.isEmpty() && pg.isEmpty() ? 0 : 1);
    }
}
