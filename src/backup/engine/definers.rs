//! `DEFINER=` clauses out of a MariaDB/MySQL dump's DDL, and nowhere else. A dump is loaded as
//! the tenant's own user, who may not name another definer (that takes a global privilege);
//! without the clause the loading user becomes the definer, so a view, routine, trigger or
//! event runs as the tenant and never as anyone more privileged.
//!
//! The dump is tenant content: its rows may hold any text, `DEFINER=` included, and must load
//! byte for byte. So this is a small lexer, not a search: it follows strings (`'…'`, `"…"`,
//! `` `…` `` with their escapes), comments, executable comments (`/*!50013 … */`, whose
//! content is SQL) and the client's `DELIMITER` across lines, and removes a `DEFINER=user@host`
//! only in a statement's head — after nothing but `CREATE`, `OR REPLACE`, `ALGORITHM=…` or
//! `SQL SECURITY …` — never in a routine body, a string or a row.

/// Where the lexer is between bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Code,
    Quote(u8),
    LineComment,
    BlockComment,
}

/// Words that may stand in a DDL statement's head before the object keyword.
const HEAD: &[&str] = &[
    "CREATE",
    "OR",
    "REPLACE",
    "ALGORITHM",
    "UNDEFINED",
    "MERGE",
    "TEMPTABLE",
    "SQL",
    "SECURITY",
    "DEFINER",
    "INVOKER",
];

/// The lexer's state across a dump's lines.
#[derive(Debug)]
pub struct Definers {
    at: At,
    /// Inside `/*!NNNNN … */`: code, but `*/` ends it.
    exec_comment: bool,
    delimiter: Vec<u8>,
    /// Only head words since the statement began.
    head: bool,
    /// Nothing but blanks and comments since the statement began.
    fresh: bool,
    /// A backslash escapes in strings (false under `NO_BACKSLASH_ESCAPES`, which a dump sets
    /// before a routine or trigger created in that mode and restores after it).
    backslash: bool,
    /// A string's backslash was the last byte of a piece: the next byte is escaped.
    escape_pending: bool,
    /// `sql_mode` was the last word: its value (a string, or `@saved_sql_mode`) comes next.
    mode_next: bool,
    /// Where in this line's output the string holding a new `sql_mode` began.
    mode_from: Option<usize>,
}

impl Default for Definers {
    fn default() -> Self {
        Definers {
            at: At::Code,
            exec_comment: false,
            delimiter: b";".to_vec(),
            head: true,
            fresh: true,
            backslash: true,
            escape_pending: false,
            mode_next: false,
            mode_from: None,
        }
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// The end of `user@host` starting at `j` (each part backquoted, quoted or bare).
fn account_end(s: &[u8], mut j: usize) -> usize {
    for part in 0..2 {
        match s.get(j) {
            Some(&q @ (b'`' | b'\'' | b'"')) => {
                j += 1;
                while j < s.len() {
                    if s[j] == q && s.get(j + 1) == Some(&q) {
                        j += 2;
                    } else if s[j] == q {
                        j += 1;
                        break;
                    } else {
                        j += 1;
                    }
                }
            }
            _ => {
                while j < s.len() && (is_word(s[j]) || matches!(s[j], b'.' | b'%' | b'-')) {
                    j += 1;
                }
            }
        }
        if part == 0 && s.get(j) == Some(&b'@') {
            j += 1;
        } else {
            break;
        }
    }
    j
}

impl Definers {
    /// One line of the dump (or, `whole` false, a piece of a line too long to rewrite): the
    /// line as it must be loaded. Row data and routine bodies come back unchanged.
    pub fn line(&mut self, line: &[u8], whole: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.len());
        if self.at == At::Code && self.fresh && !self.exec_comment && self.delimiter_command(line) {
            out.extend_from_slice(line);
            return out;
        }
        let mut i = 0;
        while i < line.len() {
            i = self.step(line, i, whole, &mut out);
        }
        out
    }

    /// `DELIMITER x` (a client command, alone on its line at a statement's start).
    fn delimiter_command(&mut self, line: &[u8]) -> bool {
        let t = line.trim_ascii_start();
        let Some(rest) = t
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case(b"DELIMITER "))
            .map(|_| t[10..].trim_ascii())
        else {
            return false;
        };
        if !rest.is_empty() {
            self.delimiter = rest.to_vec();
        }
        true
    }

    /// Lexes from `i`, writing to `out`; where the next step starts.
    fn step(&mut self, s: &[u8], i: usize, rewrite: bool, out: &mut Vec<u8>) -> usize {
        let b = s[i];
        match self.at {
            At::Quote(q) => self.quoted(s, i, q, out),
            At::LineComment => {
                if b == b'\n' {
                    self.at = At::Code;
                }
                out.push(b);
                i + 1
            }
            At::BlockComment => {
                if s[i..].starts_with(b"*/") {
                    self.at = At::Code;
                    out.extend_from_slice(b"*/");
                    return i + 2;
                }
                out.push(b);
                i + 1
            }
            At::Code => self.code(s, i, rewrite, out),
        }
    }

    /// Inside a string or quoted identifier opened by `q`.
    fn quoted(&mut self, s: &[u8], i: usize, q: u8, out: &mut Vec<u8>) -> usize {
        let b = s[i];
        if std::mem::take(&mut self.escape_pending) {
            out.push(b);
            return i + 1;
        }
        if b == b'\\' && q != b'`' && self.backslash {
            // An escape: the next byte is the string's, whatever it is (even in the next piece).
            let n = if i + 1 < s.len() { 2 } else { 1 };
            self.escape_pending = n == 1;
            out.extend_from_slice(&s[i..i + n]);
            return i + n;
        }
        if b == q && s.get(i + 1) == Some(&q) {
            out.extend_from_slice(&s[i..i + 2]);
            return i + 2;
        }
        if b != q {
            // Plain string bytes up to the next quote or backslash, copied at once: rows are
            // most of a dump, and most of a row is inside strings.
            let n = s[i..]
                .iter()
                .position(|&c| c == q || c == b'\\')
                .unwrap_or(s.len() - i);
            out.extend_from_slice(&s[i..i + n.max(1)]);
            return i + n.max(1);
        }
        out.push(b);
        if b == q {
            self.at = At::Code;
            if let Some(from) = self.mode_from.take() {
                let mode = String::from_utf8_lossy(&out[from.min(out.len())..]).to_uppercase();
                self.backslash = !mode.contains("NO_BACKSLASH_ESCAPES");
            }
        }
        i + 1
    }

    fn code(&mut self, s: &[u8], i: usize, rewrite: bool, out: &mut Vec<u8>) -> usize {
        let rest = &s[i..];
        if rest.starts_with(&self.delimiter) {
            out.extend_from_slice(&self.delimiter);
            (self.head, self.fresh, self.exec_comment) = (true, true, false);
            return i + self.delimiter.len();
        }
        if let Some(n) = exec_marker(rest) {
            self.exec_comment = true;
            out.extend_from_slice(&rest[..n]);
            return i + n;
        }
        if self.exec_comment && rest.starts_with(b"*/") {
            self.exec_comment = false;
            out.extend_from_slice(b"*/");
            return i + 2;
        }
        if rest.starts_with(b"/*") {
            self.at = At::BlockComment;
            out.extend_from_slice(b"/*");
            return i + 2;
        }
        let dashes = rest.starts_with(b"--")
            && rest
                .get(2)
                .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control());
        if dashes || rest[0] == b'#' {
            self.at = At::LineComment;
            out.push(rest[0]);
            return i + 1;
        }
        let b = rest[0];
        if b.is_ascii_whitespace() {
            out.push(b);
            return i + 1;
        }
        self.fresh = false;
        if matches!(b, b'\'' | b'"' | b'`') {
            self.at = At::Quote(b);
            self.head = false;
            if std::mem::take(&mut self.mode_next) {
                self.mode_from = Some(out.len());
            }
            out.push(b);
            return i + 1;
        }
        if !is_word(b) {
            self.head &= b == b'=';
            if b == b'@' && self.mode_next {
                // `sql_mode = @saved_sql_mode`: the dump's own mode, with backslash escapes.
                self.backslash = true;
            }
            self.mode_next &= b == b'=';
            out.push(b);
            return i + 1;
        }
        let end = i + rest.iter().take_while(|c| is_word(**c)).count();
        let word = &s[i..end];
        if self.head
            && rewrite
            && word.eq_ignore_ascii_case(b"DEFINER")
            && s.get(end) == Some(&b'=')
        {
            // The clause goes; the loading user (the tenant) becomes the definer.
            return account_end(s, end + 1);
        }
        self.head &= HEAD.iter().any(|h| word.eq_ignore_ascii_case(h.as_bytes()));
        self.mode_next = word.eq_ignore_ascii_case(b"sql_mode");
        out.extend_from_slice(word);
        end
    }
}

/// The length of `/*!NNNNN` or `/*M!NNNNNN` at the start of `s`.
fn exec_marker(s: &[u8]) -> Option<usize> {
    let n = if s.starts_with(b"/*!") {
        3
    } else if s.starts_with(b"/*M!") {
        4
    } else {
        return None;
    };
    Some(n + s[n..].iter().take_while(|c| c.is_ascii_digit()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dump: &str) -> String {
        let mut d = Definers::default();
        dump.split_inclusive('\n')
            .map(|l| String::from_utf8(d.line(l.as_bytes(), true)).unwrap())
            .collect()
    }

    #[test]
    fn definers_leave_the_heads_of_views_routines_triggers_and_events() {
        let dump = "/*!50001 CREATE ALGORITHM=UNDEFINED */\n\
            /*!50013 DEFINER=`word``press`@`%` SQL SECURITY DEFINER */\n\
            /*!50001 VIEW `v` AS select 1 AS `1` */;\n\
            DELIMITER ;;\n\
            CREATE DEFINER=`app`@`localhost` PROCEDURE `p`()\n\
            BEGIN\n  SELECT 'x;;y';\nEND ;;\n\
            /*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t BEFORE INSERT ON a FOR EACH ROW SET NEW.x = 1 */;;\n\
            /*!50106 CREATE*/ /*!50117 DEFINER=root@localhost*/ /*!50106 EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;\n\
            DELIMITER ;\n";
        let out = run(dump);
        assert!(!out.contains("DEFINER="), "{out}");
        assert!(out.contains("/*!50013  SQL SECURITY DEFINER */"), "{out}");
        assert!(out.contains("CREATE  PROCEDURE `p`()"), "{out}");
        assert!(out.contains("SELECT 'x;;y';"), "{out}");
        assert!(out.contains("/*!50017 */ /*!50003 TRIGGER"), "{out}");
        assert!(out.contains("/*!50117 */ /*!50106 EVENT"), "{out}");
    }

    #[test]
    fn definer_text_in_rows_strings_comments_and_bodies_is_loaded_byte_for_byte() {
        let dump = "INSERT INTO `wp_options` VALUES (1,'How to use DEFINER=`app`@`%` in views','yes');\n\
            INSERT INTO `t` VALUES ('it''s DEFINER=x@y'),('a\\'b DEFINER=`q`@`%`'),(\"DEFINER=u@h\");\n\
            -- DEFINER=`c`@`%` in a comment\n\
            /* DEFINER=`c`@`%` */ SELECT 1;\n\
            DELIMITER ;;\n\
            CREATE DEFINER=`a`@`%` FUNCTION f() RETURNS text\n\
            RETURN 'CREATE DEFINER=`root`@`%` PROCEDURE x' ;;\n\
            CREATE DEFINER=`a`@`%` PROCEDURE p()\nBEGIN\n\
            /*!50013 DEFINER=`root`@`%` */\nEND ;;\n\
            DELIMITER ;\n\
            INSERT INTO `t` VALUES ('multi\nline\nCREATE DEFINER=`root`@`%` VIEW');\n";
        let out = run(dump);
        for kept in [
            "'How to use DEFINER=`app`@`%` in views'",
            "'it''s DEFINER=x@y'",
            "'a\\'b DEFINER=`q`@`%`'",
            "\"DEFINER=u@h\"",
            "-- DEFINER=`c`@`%` in a comment",
            "/* DEFINER=`c`@`%` */",
            "RETURN 'CREATE DEFINER=`root`@`%` PROCEDURE x'",
            "/*!50013 DEFINER=`root`@`%` */\nEND",
            "'multi\nline\nCREATE DEFINER=`root`@`%` VIEW'",
        ] {
            assert!(out.contains(kept), "{kept} changed:\n{out}");
        }
        assert!(out.contains("CREATE  FUNCTION f()"), "{out}");
        assert!(out.contains("CREATE  PROCEDURE p()"), "{out}");
    }

    #[test]
    fn routines_made_without_backslash_escapes_and_odd_comments_keep_the_lexer_in_step() {
        let dump = "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\
            DELIMITER ;;\n\
            /*!50003 SET sql_mode = 'STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES' */ ;;\n\
            CREATE DEFINER=`a`@`%` FUNCTION f() RETURNS text RETURN 'C:\\' ;;\n\
            /*!50003 SET sql_mode = @saved_sql_mode */ ;;\n\
            CREATE DEFINER=`a`@`%` PROCEDURE p() SELECT 'it\\'s' ;;\n\
            DELIMITER ;\n\
            --\tDEFINER=`x`@`%` a comment after a tab\n\
            INSERT INTO t VALUES ('DEFINER=`r`@`%`');\n";
        let out = run(dump);
        assert!(out.contains("CREATE  FUNCTION f()"), "{out}");
        assert!(out.contains("CREATE  PROCEDURE p()"), "{out}");
        assert!(out.contains("--\tDEFINER=`x`@`%`"), "{out}");
        assert!(out.contains("('DEFINER=`r`@`%`')"), "{out}");
    }

    #[test]
    fn a_backslash_at_the_end_of_a_piece_escapes_the_first_byte_of_the_next() {
        let mut d = Definers::default();
        let mut out = d.line(b"INSERT INTO t VALUES ('a\\", false);
        out.extend(d.line(b"'b'),('CREATE DEFINER=`r`@`%` x');\n", true));
        out.extend(d.line(b"CREATE DEFINER=`a`@`%` VIEW v AS SELECT 1;\n", true));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("('CREATE DEFINER=`r`@`%` x')"), "{out}");
        assert!(out.contains("CREATE  VIEW v"), "{out}");
    }

    #[test]
    fn a_line_without_ddl_comes_back_unchanged_and_pieces_of_long_lines_are_never_rewritten() {
        let mut d = Definers::default();
        assert_eq!(
            d.line(b"INSERT INTO t VALUES (1);\n", true),
            b"INSERT INTO t VALUES (1);\n"
        );
        let mut d = Definers::default();
        assert_eq!(
            d.line(b"CREATE DEFINER=a@b VIEW v AS SELECT 1", false),
            b"CREATE DEFINER=a@b VIEW v AS SELECT 1"
        );
    }

    #[test]
    fn unterminated_clauses_strings_and_comments_do_not_panic() {
        for d in [
            &b"DEFINER="[..],
            b"CREATE DEFINER=`ab",
            b"CREATE DEFINER=`a`@",
            b"CREATE DEFINER=`a`@`",
            b"'unterminated \\",
            b"/*!",
            b"/*M!1",
            b"DELIMITER",
            b"DELIMITER \n",
            b"-",
        ] {
            let mut l = Definers::default();
            let _ = l.line(d, true);
            let _ = l.line(d, false);
        }
    }
}
