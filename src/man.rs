//! corrald(8), generated: the title, NAME, SYNOPSIS and OPTIONS come from corrald's clap
//! definition (so the page cannot drift from `corrald --help`), the prose sections clap has
//! no place for — DESCRIPTION, SIGNALS, SYSTEMD INTEGRATION, EXIT STATUS, ENVIRONMENT,
//! FILES, EXAMPLES, SEE ALSO — are written here in roff. `corrald --generate-man` prints
//! it; `packaging/build` puts it in the packages.

/// corrald(8) in roff, for corrald's command line `command`.
pub fn corrald(command: clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(command)
        .section("8")
        .source(format!("corral {}", crate::VERSION))
        .manual("corral manual");
    let mut page = Vec::new();
    generated(&mut page, &man, clap_mangen::Man::render_title);
    generated(&mut page, &man, clap_mangen::Man::render_name_section);
    generated(&mut page, &man, clap_mangen::Man::render_synopsis_section);
    page.extend_from_slice(DESCRIPTION.as_bytes());
    generated(&mut page, &man, clap_mangen::Man::render_options_section);
    page.extend_from_slice(SECTIONS.as_bytes());
    page
}

/// Appends what `render` writes of `man` to `page`.
fn generated(
    page: &mut Vec<u8>,
    man: &clap_mangen::Man,
    render: fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>,
) {
    let mut piece = Vec::new();
    render(man, &mut piece).expect("rendering into a Vec cannot fail");
    // Every piece starts with the same two-line preamble (it defines an apostrophe
    // string); once is enough.
    match piece.strip_prefix(PREAMBLE.as_bytes()) {
        Some(rest) if !page.is_empty() => page.extend_from_slice(rest),
        _ => page.extend_from_slice(&piece),
    }
}

/// What the `roff` crate starts each rendering with.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

const DESCRIPTION: &str = r#".SH DESCRIPTION
.B corrald
starts the services described in
.BR corral.toml (5)
in dependency order, restarts them with back\-off, applies configuration changes
without disturbing what did not change, and publishes each service as an object on the
D\-Bus system bus under the name
.BR org.corral.Corral1 .
It is normally started by systemd as
.BR corral.service ;
use
.BR corralctl (1)
or
.BR busctl (1)
to talk to it.
.PP
Every service runs in its own process group with an explicit environment, and in a cgroup
v2 of its own where corrald may write one (see
.BR \-\-no\-cgroups ).
Stopping a service sends its
.I stop_signal
to every process of it, waits
.IR stop_timeout ,
then kills what is left (with
.B cgroup.kill
in a cgroup, so that nothing escapes). corrald is a child subreaper: what a service's
process leaves behind when it exits is reparented to corrald, which reaps it. When
journald runs, a service's standard output and error go to the journal with
.BI SYSLOG_IDENTIFIER= name\fR.
.PP
With a
.B [fleet]
table, the corralds of several hosts agree through etcd on which host serves each
group (see
.BR corralctl (1)
.B hosts
and
.BR move ).
corrald then also starts its fence,
.BR "corrald \-\-fence" ,
a helper that SIGKILLs the processes of the grouped services if corrald dies, so that a
group never runs on two hosts; ungrouped services outlive corrald as always.
"#;

const SECTIONS: &str = r#".SH SIGNALS
.TP
.B SIGHUP
Re\-read and apply the configuration (as
.B systemctl reload corral
does). A configuration that does not parse or validate changes nothing.
.TP
.BR SIGTERM ", " SIGINT
Stop every service in reverse dependency order, then exit 0.
.SH SYSTEMD INTEGRATION
corrald sends
.B READY=1
once it owns its bus name and the start\-up services were started,
.B RELOADING=1
and
.B READY=1
around each reload,
.B STATUS=
with a summary of the services,
.B STOPPING=1
on shutdown, and
.B WATCHDOG=1
at half of
.B WATCHDOG_USEC
while its core answers, so a hung or stopped corrald is restarted by systemd.
.SH EXIT STATUS
0 on a clean shutdown, 2 when the configuration is invalid, 1 on any other error.
.SH ENVIRONMENT
.TP
.B DBUS_SYSTEM_BUS_ADDRESS
The system bus to serve on, when neither
.B \-\-session
nor
.B \-\-bus\-address
is given (default:
.IR unix:path=/var/run/dbus/system_bus_socket ).
.TP
.B RUST_LOG
corrald's log filter when
.B \-\-log\-level
is not given.
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC ", " WATCHDOG_PID
Set by systemd; see
.B SYSTEMD INTEGRATION
above.
.TP
.B NO_COLOR
When set, corrald's log on a terminal is not coloured.
.SH FILES
.TP
.I /etc/corral/corral.toml
.TQ
.I /etc/corral/corral.d/*.toml
The configuration; see
.BR corral.toml (5).
.TP
.I /run/corral
Runtime directory: the services' notify socket (notify).
.TP
.I /var/lib/corral/state.db
The state store (SQLite): each service's desired state, the job history, and what is
needed to re-adopt running services. A corrupt file is moved to
.IR state.db.corrupt\-TIME ;
a read\-only or full state directory makes corrald keep its changes in memory and retry.
.TP
.I /usr/share/dbus-1/system.d/org.corral.Corral1.conf
The bus policy: only root may own the name; everyone may call it.
.TP
.I /usr/share/polkit-1/actions/org.corral.policy
The polkit actions
.B org.corral.manage
and
.B org.corral.reload
that decide what callers other than root may change.
.TP
.I /usr/share/dbus-1/interfaces/
Introspection XML of the D\-Bus interfaces.
.SH EXAMPLES
.nf
systemctl status corral
busctl call org.corral.Corral1 /org/corral/Corral1 org.corral.Corral1.Manager ListServices
journalctl \-t corrald
corrald \-\-check \-\-config /etc/corral/corral.toml
.fi
.SH SEE ALSO
.BR corralctl (1),
.BR corral.toml (5),
.BR systemd.service (5),
.BR busctl (1),
.BR journalctl (1)
"#;

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    fn page() -> String {
        let command = Command::new("corrald")
            .version("1.2.3")
            .about("supervise daemons")
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("PATH")
                    .help("A file"),
            );
        String::from_utf8(super::corrald(command)).unwrap()
    }

    #[test]
    fn sections_come_in_man_page_order() {
        let page = page();
        let headings: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        assert_eq!(
            headings,
            [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "SIGNALS",
                "SYSTEMD INTEGRATION",
                "EXIT STATUS",
                "ENVIRONMENT",
                "FILES",
                "EXAMPLES",
                "SEE ALSO"
            ]
        );
        assert!(page.starts_with(super::PREAMBLE), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble: {page}");
        assert!(page.contains(".TH corrald 8"), "{page}");
        let source = format!("\"corral {}\"", crate::VERSION);
        assert!(page.contains(&source), "{page}");
    }

    #[test]
    fn options_come_from_the_command() {
        let page = page();
        assert!(page.contains("\\-\\-config"), "{page}");
        assert!(page.contains("A file"), "{page}");
    }
}
