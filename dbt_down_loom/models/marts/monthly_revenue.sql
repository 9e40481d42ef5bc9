with

daily_revenue as (

    select * from {{ ref('stg_daily_revenue') }}

),

final as (

    select
        cast(date_trunc('month', revenue_date) as date) as revenue_month,
        sum(order_count) as order_count,
        sum(net_revenue) as net_revenue

    from daily_revenue

    group by 1

)

select * from final
