//! `strftime_now`: Python's `strftime` for the formats templates use, in UTC.

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Python's `datetime.strftime` for a UTC time, with glibc's directives in the C locale
/// (including the `%-d` form that drops padding). Unknown directives are kept as written.
pub(super) fn strftime(format: &str, unix_seconds: i64) -> String {
    // Far beyond any real clock, and keeps the date arithmetic from overflowing.
    let t = unix_seconds.clamp(-(1 << 40), 1 << 40);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday; 0 is Sunday.
    let year_day = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1).clamp(0, 11) as usize];

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |v: i64, width: usize| if no_pad { v.to_string() } else { format!("{v:0width$}") };
        let text = match spec {
            None => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            }
            Some('Y') => year.to_string(),
            Some('y') => num(year.rem_euclid(100), 2),
            Some('C') => num(year.div_euclid(100), 2),
            Some('m') => num(month, 2),
            Some('d') => num(day, 2),
            Some('e') => {
                if no_pad {
                    day.to_string()
                } else {
                    format!("{day:2}")
                }
            }
            Some('H') => num(hour, 2),
            Some('I') => num(hour12, 2),
            Some('M') => num(minute, 2),
            Some('S') => num(second, 2),
            Some('j') => num(year_day, 3),
            Some('p') => if hour < 12 { "AM" } else { "PM" }.to_owned(),
            Some('a') => WEEKDAYS[weekday][..3].to_owned(),
            Some('A') => WEEKDAYS[weekday].to_owned(),
            Some('b' | 'h') => month_name[..3].to_owned(),
            Some('B') => month_name.to_owned(),
            Some('u') => (if weekday == 0 { 7 } else { weekday }).to_string(),
            Some('w') => weekday.to_string(),
            Some('s') => t.to_string(),
            Some('D' | 'x') => strftime("%m/%d/%y", t),
            Some('F') => strftime("%Y-%m-%d", t),
            Some('T' | 'X') => strftime("%H:%M:%S", t),
            Some('R') => strftime("%H:%M", t),
            Some('r') => strftime("%I:%M:%S %p", t),
            Some('c') => strftime("%a %b %e %H:%M:%S %Y", t),
            Some('n') => "\n".to_owned(),
            Some('t') => "\t".to_owned(),
            Some('%') => "%".to_owned(),
            // A naive datetime (which `datetime.now()` is) has no zone: Python prints nothing.
            Some('z' | 'Z') => String::new(),
            Some(other) => format!("%{}{other}", if no_pad { "-" } else { "" }),
        };
        out.push_str(&text);
    }
    out
}
