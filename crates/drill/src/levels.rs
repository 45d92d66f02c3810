//! The disaster-recovery capability levels of GB/T 20988 (信息系统灾难恢复规范), as data.
//!
//! # Where the figures come from
//!
//! GB/T 20988-2025《网络安全技术 信息系统灾难恢复规范》 replaced GB/T 20988-2007 (and GB/T
//! 30285-2013) on 2026-01-01. It keeps the six capability levels of the 2007 edition, each
//! judged on seven elements: the data backup system, the standby data processing system, the
//! standby network, the standby infrastructure, technical support, operations management and
//! the DR plan. The requirements of the data backup system below follow the level
//! definitions of GB/T 20988-2007 Annex A (normative), and the RTO/RPO ranges follow the
//! informative table of that edition that maps levels to RTO and RPO — the figures that are
//! commonly quoted for the 2025 edition as well (level 5: RPO 0–30 min; level 6: RPO 0 and an
//! RTO of minutes; levels 1–4: RPO of hours to days). The standard's own text governs: check
//! these figures against GB/T 20988-2025 before using a report in an audit.
//!
//! # How ranges become limits
//!
//! The standard gives ranges that a level *achieves* ("RTO 2 days or more", "RPO 1 to 7
//! days"). A measured figure supports a level when it is within the upper end of the range;
//! a range without an upper end ("2 days or more") sets no limit, since recovering faster
//! never disqualifies. Where the standard says "minutes" (level 6), zaibei reads at most 30
//! minutes. Where it says "several times a day" (levels 3 and 4: batch transfer to the standby
//! site), zaibei reads a standby site at most 12 hours behind; "real time" (level 5) is read
//! as at most level 5's RPO limit, 30 minutes, behind.
//!
//! The summaries of the organisational elements are short paraphrases for the operator's
//! attestation, not the standard's wording.

use serde::{Deserialize, Serialize};

/// Seconds in a minute, hour and day.
const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Lag behind the primary at which a standby site still counts as fed "several times a
/// day" (levels 3 and 4).
pub const BATCH_TRANSFER_MAX_LAG: u64 = 12 * HOUR;

/// Lag behind the primary at which replication still counts as "real time" (level 5).
pub const REAL_TIME_MAX_LAG: u64 = 30 * MINUTE;

/// One of the seven elements GB/T 20988 judges a level on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// 数据备份系统: what zaibei measures.
    DataBackupSystem,
    /// 备用数据处理系统.
    StandbyDataProcessing,
    /// 备用网络系统.
    StandbyNetwork,
    /// 备用基础设施.
    StandbyInfrastructure,
    /// 专业技术支持能力.
    TechnicalSupport,
    /// 运行维护管理能力.
    OperationsManagement,
    /// 灾难恢复预案.
    DrPlan,
}

impl Element {
    /// The organisational elements: what the operator attests, in the standard's order.
    pub const ORGANISATIONAL: [Element; 6] = [
        Element::StandbyDataProcessing,
        Element::StandbyNetwork,
        Element::StandbyInfrastructure,
        Element::TechnicalSupport,
        Element::OperationsManagement,
        Element::DrPlan,
    ];

    /// The element's name in Chinese.
    pub fn name_zh(self) -> &'static str {
        match self {
            Element::DataBackupSystem => "数据备份系统",
            Element::StandbyDataProcessing => "备用数据处理系统",
            Element::StandbyNetwork => "备用网络系统",
            Element::StandbyInfrastructure => "备用基础设施",
            Element::TechnicalSupport => "专业技术支持能力",
            Element::OperationsManagement => "运行维护管理能力",
            Element::DrPlan => "灾难恢复预案",
        }
    }

    /// The element's name in English.
    pub fn name_en(self) -> &'static str {
        match self {
            Element::DataBackupSystem => "data backup system",
            Element::StandbyDataProcessing => "standby data processing system",
            Element::StandbyNetwork => "standby network",
            Element::StandbyInfrastructure => "standby infrastructure",
            Element::TechnicalSupport => "technical support",
            Element::OperationsManagement => "operations management",
            Element::DrPlan => "disaster recovery plan",
        }
    }
}

/// A requirement of the data backup system that zaibei can judge from what it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupRequirement {
    /// A full backup at least every so many seconds (every zaibei snapshot is a full,
    /// self-contained image, so the gaps between snapshots are the backup interval).
    FullBackupEvery(u64),
    /// Backup media stored off site: a copy of the repository at another site.
    OffsiteCopy,
    /// Critical data sent to the standby site over the network several times a day: a
    /// standby site at most this many seconds behind.
    BatchTransfer(u64),
    /// Critical data replicated to the standby site in real time: a standby site at most this
    /// many seconds behind.
    RealTimeReplication(u64),
    /// Remote real-time backup without data loss (RPO 0).
    ZeroLoss,
}

impl BackupRequirement {
    /// A stable code for reports.
    pub fn code(self) -> &'static str {
        match self {
            BackupRequirement::FullBackupEvery(_) => "full_backup_interval",
            BackupRequirement::OffsiteCopy => "offsite_copy",
            BackupRequirement::BatchTransfer(_) => "batch_transfer_to_standby",
            BackupRequirement::RealTimeReplication(_) => "real_time_replication",
            BackupRequirement::ZeroLoss => "zero_data_loss",
        }
    }

    /// The requirement in Chinese.
    pub fn text_zh(self) -> String {
        match self {
            BackupRequirement::FullBackupEvery(s) if s >= 7 * DAY => {
                "完全数据备份至少每周一次".into()
            }
            BackupRequirement::FullBackupEvery(_) => "完全数据备份至少每天一次".into(),
            BackupRequirement::OffsiteCopy => "备份介质场外存放".into(),
            BackupRequirement::BatchTransfer(_) => {
                "每天多次利用通信网络将关键数据定时批量传送至备用场地".into()
            }
            BackupRequirement::RealTimeReplication(_) => {
                "采用远程数据复制技术，利用通信网络将关键数据实时复制到备用场地".into()
            }
            BackupRequirement::ZeroLoss => "远程实时备份，实现数据零丢失".into(),
        }
    }

    /// The requirement in English.
    pub fn text_en(self) -> String {
        match self {
            BackupRequirement::FullBackupEvery(s) if s >= 7 * DAY => {
                "a full backup at least once a week".into()
            }
            BackupRequirement::FullBackupEvery(_) => "a full backup at least once a day".into(),
            BackupRequirement::OffsiteCopy => "backup media stored off site".into(),
            BackupRequirement::BatchTransfer(_) => {
                "critical data sent to the standby site over the network several times a day".into()
            }
            BackupRequirement::RealTimeReplication(_) => {
                "critical data replicated to the standby site in real time".into()
            }
            BackupRequirement::ZeroLoss => "remote real-time backup without data loss".into(),
        }
    }
}

/// One capability level: its limits and requirements.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    /// 1 to 6.
    pub number: u8,
    /// Its name in Chinese.
    pub name_zh: &'static str,
    /// Its name in English.
    pub name_en: &'static str,
    /// Longest RTO that supports the level, in seconds (`None`: no limit).
    pub rto_max: Option<u64>,
    /// Longest RPO that supports the level, in seconds (0: no data loss at all).
    pub rpo_max: u64,
    /// The RTO range as the standard's table gives it, in Chinese and English.
    pub rto_range: (&'static str, &'static str),
    /// The RPO range as the standard's table gives it, in Chinese and English.
    pub rpo_range: (&'static str, &'static str),
    /// What the data backup system must do (complete for the level, not only what it adds).
    pub backup: &'static [BackupRequirement],
    /// The organisational elements, each with its summary in Chinese and English, in the
    /// order of [`Element::ORGANISATIONAL`].
    pub organisational: [(&'static str, &'static str); 6],
}

/// An organisational element the level does not require.
pub const NONE: (&str, &str) = ("无要求", "none required");

/// The summary shared by every level's DR plan.
const PLAN: (&str, &str) = (
    "有相应的经过完整测试和演练的灾难恢复预案",
    "a DR plan for this level, fully tested and rehearsed",
);

/// Levels 1 to 6.
pub const LEVELS: [Level; 6] = [
    Level {
        number: 1,
        name_zh: "基本支持",
        name_en: "basic support",
        rto_max: None,
        rpo_max: 7 * DAY,
        rto_range: ("2天以上", "2 days or more"),
        rpo_range: ("1天至7天", "1 to 7 days"),
        backup: &[
            BackupRequirement::FullBackupEvery(7 * DAY),
            BackupRequirement::OffsiteCopy,
        ],
        organisational: [
            NONE,
            NONE,
            (
                "有符合介质存放条件的场地",
                "a site fit for storing backup media",
            ),
            NONE,
            (
                "有介质存取、验证和转储管理制度；按介质特性定期验证备份数据的有效性",
                "procedures for handling, checking and rotating backup media; backups verified regularly",
            ),
            PLAN,
        ],
    },
    Level {
        number: 2,
        name_zh: "备用场地支持",
        name_en: "standby site support",
        rto_max: None,
        rpo_max: 7 * DAY,
        rto_range: ("24小时以后", "24 hours or more"),
        rpo_range: ("1天至7天", "1 to 7 days"),
        backup: &[
            BackupRequirement::FullBackupEvery(7 * DAY),
            BackupRequirement::OffsiteCopy,
        ],
        organisational: [
            (
                "配备部分数据处理设备，或能在预定时间内调配到备用场地",
                "part of the processing equipment, or means to bring it to the standby site in the planned time",
            ),
            (
                "配备部分通信线路和网络设备，或能在预定时间内调配",
                "part of the lines and network equipment, or means to provide them in the planned time",
            ),
            (
                "有介质存放场地，以及满足系统和关键业务恢复运作要求的场地",
                "a media store and a site where systems and critical business can run again",
            ),
            NONE,
            (
                "同第1级，另有备用场地管理制度及设备、线路调配协议",
                "as level 1, plus standby-site procedures and supply agreements for equipment and lines",
            ),
            PLAN,
        ],
    },
    Level {
        number: 3,
        name_zh: "电子传输和部分设备支持",
        name_en: "electronic transfer and partial equipment support",
        rto_max: None,
        rpo_max: DAY,
        rto_range: ("12小时以上", "12 hours or more"),
        rpo_range: ("数小时至1天", "hours to 1 day"),
        backup: &[
            BackupRequirement::FullBackupEvery(DAY),
            BackupRequirement::OffsiteCopy,
            BackupRequirement::BatchTransfer(BATCH_TRANSFER_MAX_LAG),
        ],
        organisational: [
            (
                "配备灾难恢复所需的部分数据处理设备",
                "part of the processing equipment needed for recovery, installed",
            ),
            (
                "配备部分通信线路和相应的网络设备",
                "part of the lines and network equipment, installed",
            ),
            (
                "有满足备用数据处理系统、网络设备和关键业务恢复运作要求的场地",
                "a site fit for the standby systems, network equipment and critical business",
            ),
            (
                "灾难备份中心有专职的机房运行管理人员",
                "full-time machine-room staff at the DR centre",
            ),
            (
                "同第1级，另有电子传输数据备份系统的运行管理制度",
                "as level 1, plus procedures for the electronic-transfer backup system",
            ),
            PLAN,
        ],
    },
    Level {
        number: 4,
        name_zh: "电子传输及完整设备支持",
        name_en: "electronic transfer and complete equipment support",
        rto_max: Some(2 * DAY),
        rpo_max: DAY,
        rto_range: ("数小时至2天", "hours to 2 days"),
        rpo_range: ("数小时至1天", "hours to 1 day"),
        backup: &[
            BackupRequirement::FullBackupEvery(DAY),
            BackupRequirement::OffsiteCopy,
            BackupRequirement::BatchTransfer(BATCH_TRANSFER_MAX_LAG),
        ],
        organisational: [
            (
                "配备灾难恢复所需的全部数据处理设备，并处于就绪或运行状态",
                "all the processing equipment needed for recovery, ready or running",
            ),
            (
                "配备灾难恢复所需的通信线路和网络设备，并处于就绪状态",
                "all the lines and network equipment needed, ready",
            ),
            ("备用场地7×24小时运作", "standby sites operating 24×7"),
            (
                "7×24小时专职机房管理、数据备份、硬件和网络技术支持人员",
                "24×7 full-time machine-room, backup, hardware and network staff",
            ),
            (
                "同第3级，另有备用机房、硬件和网络运行管理制度",
                "as level 3, plus procedures for the standby machine room, hardware and network",
            ),
            PLAN,
        ],
    },
    Level {
        number: 5,
        name_zh: "实时数据传输及完整设备支持",
        name_en: "real-time data transfer and complete equipment support",
        rto_max: Some(2 * DAY),
        rpo_max: 30 * MINUTE,
        rto_range: ("数分钟至2天", "minutes to 2 days"),
        rpo_range: ("0至30分钟", "0 to 30 minutes"),
        backup: &[
            BackupRequirement::FullBackupEvery(DAY),
            BackupRequirement::OffsiteCopy,
            BackupRequirement::RealTimeReplication(REAL_TIME_MAX_LAG),
        ],
        organisational: [
            (
                "配备灾难恢复所需的全部数据处理设备，并处于就绪或运行状态",
                "all the processing equipment needed for recovery, ready or running",
            ),
            (
                "同第4级，并具备通信网络自动或集中切换能力",
                "as level 4, plus automatic or centralised network switch-over",
            ),
            ("备用场地7×24小时运作", "standby sites operating 24×7"),
            (
                "7×24小时专职机房管理、数据备份、硬件和网络技术支持人员",
                "24×7 full-time machine-room, backup, hardware and network staff",
            ),
            (
                "同第4级，另有实时数据备份系统的运行管理制度",
                "as level 4, plus procedures for the real-time replication system",
            ),
            PLAN,
        ],
    },
    Level {
        number: 6,
        name_zh: "数据零丢失和远程集群支持",
        name_en: "zero data loss and remote cluster support",
        rto_max: Some(30 * MINUTE),
        rpo_max: 0,
        rto_range: ("数分钟", "minutes"),
        rpo_range: ("0", "0"),
        backup: &[
            BackupRequirement::FullBackupEvery(DAY),
            BackupRequirement::OffsiteCopy,
            BackupRequirement::ZeroLoss,
        ],
        organisational: [
            (
                "处理能力与生产系统一致并完全兼容；应用集群可实时无缝切换，远程集群实时监控和自动切换",
                "capacity equal to and compatible with production; clustered applications with seamless real-time switch-over, monitored and failed over automatically",
            ),
            (
                "与主系统同等级的线路和网络设备，处于运行状态；用户可同时接入主、备中心",
                "lines and network equipment of production grade, running; users can reach both centres at once",
            ),
            ("备用场地7×24小时运作", "standby sites operating 24×7"),
            (
                "同第5级，另有7×24小时专职操作系统、数据库和应用软件技术支持人员",
                "as level 5, plus 24×7 operating-system, database and application staff",
            ),
            (
                "同第5级，另有远程集群系统的运行管理制度",
                "as level 5, plus procedures for the remote cluster",
            ),
            PLAN,
        ],
    },
];

/// The level numbered `n` (1 to 6).
pub fn level(n: u8) -> Option<&'static Level> {
    LEVELS.iter().find(|l| l.number == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_numbered_in_order_and_get_stricter() {
        for (i, l) in LEVELS.iter().enumerate() {
            assert_eq!(usize::from(l.number), i + 1);
            assert_eq!(level(l.number).map(|x| x.number), Some(l.number));
        }
        for pair in LEVELS.windows(2) {
            assert!(pair[1].rpo_max <= pair[0].rpo_max, "{}", pair[1].number);
            match (pair[0].rto_max, pair[1].rto_max) {
                (Some(a), Some(b)) => assert!(b <= a, "{}", pair[1].number),
                (Some(_), None) => panic!("level {} drops an RTO limit", pair[1].number),
                _ => {}
            }
        }
        assert_eq!(level(0).map(|l| l.number), None);
        assert_eq!(level(7).map(|l| l.number), None);
    }

    #[test]
    fn quoted_targets_of_levels_5_and_6() {
        let five = &LEVELS[4];
        assert_eq!(five.rpo_max, 30 * 60);
        let six = &LEVELS[5];
        assert_eq!(six.rpo_max, 0);
        assert!(six.backup.contains(&BackupRequirement::ZeroLoss));
        // Levels 1 to 4: hours to days.
        for l in &LEVELS[..4] {
            assert!(l.rpo_max >= HOUR, "level {}", l.number);
        }
    }
}
